"""Carrying out a recovery plan: preflight, restore (every source at once), start, health
checks, summary. Each step records its start, end, outcome and one sentence into the
report and tells the observer twice (begun, done), which is all the CLI renders.

Preflight fails before anything is written, so a refused recovery leaves every target as
it was. A drill (issue 16) is this same run with a sandbox plan (``--target-root``),
followed by ``teardown``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from safehold.dr.recovery import sources as kinds
from safehold.dr.recovery.health import run_check
from safehold.dr.recovery.plan import RecoveryPlan, SourcePlan
from safehold.dr.recovery.report import (
    FAILED,
    OK,
    SKIPPED,
    Observer,
    RecoveryReport,
    SourceOutcome,
    StepRecord,
    utcnow,
)
from safehold.dr.recovery.state import RESTORED, RESTORING, STARTED, RecoveryState
from safehold.errors import (
    Interrupted,
    RecoveryFailed,
    RecoveryRefused,
    RecoveryUnhealthy,
    SafeholdError,
)
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["Recovery", "teardown"]


def _quiet(_record: StepRecord) -> None:
    pass


class Recovery:
    """One run of a plan against an opened repository."""

    def __init__(
        self,
        plan: RecoveryPlan,
        repo: Repository,
        commands: kinds.PgCommands,
        state: RecoveryState,
        observer: Observer = _quiet,
        force: bool = False,
        resumed: bool = False,
    ) -> None:
        self.plan = plan
        self.repo = repo
        self.commands = commands
        self.state = state
        self.observer = observer
        self.force = force
        self.report = RecoveryReport(plan.to_doc(), resumed=resumed)
        self.snapshots: dict[str, Snapshot] = {}
        self.restored: dict[str, kinds.Restored] = {}
        for sp in plan.sources:
            self.report.sources[sp.name] = SourceOutcome(
                sp.name, sp.kind, sp.snapshot_id, sp.target, sp.point, port=sp.port
            )

    def planned(self, began: str, detail: str) -> None:
        """The plan was decided from ``began`` on (opening the repository, choosing every
        source's snapshot): part of the recovery's time, so the RTO counts from there."""
        self.report.started = began
        record = StepRecord("plan", began)
        record.finish(OK, detail)
        self.report.steps.insert(0, record)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> RecoveryReport:
        """Every step in order; the report says how it ended (``error()`` raises it)."""
        for record in self.report.steps:  # the plan's step, already done
            self.observer(record)
        try:
            self._step("preflight", None, self.preflight)
            if not self.state.unfinished():
                self.state.begin(self.plan)
            self._each("restore", self.restore_one)
            self._each("start", self.start_one)
            if self.plan.start:
                self._step("start", "application", self.start_application)
            self.report.healthy = self._health()
            self.report.outcome = "recovered" if self.report.healthy else "unhealthy"
        except RecoveryRefused as exc:
            self.report.outcome, self.report.error = "refused", str(exc)
        except (SafeholdError, OSError) as exc:
            self.report.outcome, self.report.error = "failed", str(exc)
            if isinstance(exc, Interrupted):
                self.report.outcome = "interrupted"
        for restored in self.restored.values():
            if restored.prefetcher is not None:
                restored.prefetcher.stop()
        self.report.ended = utcnow().isoformat()
        if self.report.outcome in ("recovered", "unhealthy"):
            self.state.finish(self.report.outcome)
        return self.report

    def error(self) -> SafeholdError | None:
        """The error that matches the outcome, for the CLI's exit code."""
        r = self.report
        if r.outcome == "refused":
            return RecoveryRefused(
                str(r.error).removeprefix("Recovery refused, nothing was written: ")
            )
        if r.outcome == "interrupted":
            return Interrupted()
        if r.outcome == "failed":
            failed = [s for s in r.steps if s.outcome == FAILED]
            step = failed[0].step if failed else "?"
            return RecoveryFailed(step, r.error)
        if r.outcome == "unhealthy":
            bad = [s for s in r.steps if s.step == "health" and s.outcome == FAILED]
            return RecoveryUnhealthy("; ".join(f"{s.source}: {s.detail}" for s in bad))
        return None

    def _step(self, name: str, source: str | None, action: Callable[[], str]) -> str:
        record = self.report.begin(name, source)
        self.observer(record)
        try:
            detail = action()
        except BaseException as exc:
            record.finish(FAILED, str(exc) or type(exc).__name__)
            self.observer(record)
            raise
        skipped = detail.startswith("skipped: ")
        record.finish(SKIPPED if skipped else OK, detail.removeprefix("skipped: "))
        self.observer(record)
        return detail

    def _each(self, name: str, action: Callable[[SourcePlan], str]) -> None:
        """``action`` for every source at once; the first failure fails the step."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.plan.sources))) as pool:
            futures = [
                pool.submit(self._step, name, sp.name, functools.partial(action, sp))
                for sp in self.plan.sources
            ]
            errors = [f.exception() for f in futures]
        for exc in errors:
            if exc is not None:
                raise exc

    # -- preflight ------------------------------------------------------------------------

    def preflight(self) -> str:
        problems: list[str] = []
        for sp in self.plan.sources:
            if self.state.source(sp.name) is None:
                problems += kinds.check_target(sp, self.force)
        problems += kinds.estimate_disk(self.plan)
        if problems:
            raise RecoveryRefused("; ".join(problems))
        self.snapshots = {s.id: s for s in self.repo.list_snapshots()}
        missing = [sp.name for sp in self.plan.sources if sp.snapshot_id not in self.snapshots]
        if missing:
            raise RecoveryRefused(f"the planned snapshots of {', '.join(missing)} are gone")
        size = sum(sp.size for sp in self.plan.sources)
        return f"about {size / 1e6:.1f} MB to restore; targets free, ports free, room enough"

    # -- restore and start ----------------------------------------------------------------

    def restore_one(self, sp: SourcePlan) -> str:
        done = self.state.source(sp.name)
        outcome = self.report.sources[sp.name]
        if done in (RESTORED, STARTED):
            outcome.restored = True
            return f"skipped: restored by the interrupted run ({sp.target})"
        if done == RESTORING or self.force:
            kinds.clear_target(sp)  # what an interrupted run (or the old contents) left
        self.state.mark(sp.name, RESTORING)
        snap = self.snapshots[sp.snapshot_id]
        restored = kinds.restore_source(self.repo, snap, sp, self.commands)
        self.restored[sp.name] = restored
        outcome.bytes_written, outcome.restored = restored.bytes_written, True
        self.state.mark(sp.name, RESTORED)
        logs = "binlogs" if sp.kind == "mysql" else "WAL"
        log = f", then replay {logs} to {sp.log_target}" if sp.log_target else ""
        return f"snapshot {sp.snapshot_id[:8]} to {sp.target}: {restored.bytes_written} bytes{log}"

    def start_one(self, sp: SourcePlan) -> str:
        outcome = self.report.sources[sp.name]
        if sp.kind not in ("postgres", "redis", "mysql"):
            outcome.reached = sp.point
            return f"skipped: nothing to start (data as of {sp.point})"
        restored = self.restored.get(sp.name) or kinds.Restored()
        if self.state.source(sp.name) == STARTED and kinds.is_running(sp):
            outcome.started = True
            outcome.reached = sp.point
            return f"skipped: already running on port {sp.port}"
        snap = self.snapshots[sp.snapshot_id]
        reached = kinds.start_source(self.repo, snap, self.plan, sp, restored)
        outcome.started, outcome.reached = True, reached or sp.point
        self.state.mark(sp.name, STARTED)
        if sp.kind == "postgres":
            outcome.replay_seconds = round(restored.replay_seconds, 3)
            if restored.restart_seconds is not None:
                outcome.restart_seconds = round(restored.restart_seconds, 3)
            replayed = (
                f"recovery reached {reached} ({sp.log_target}) in {restored.replay_seconds:.1f}s"
            )
            if restored.restart_seconds is None:
                return f"PostgreSQL on port {sp.port}: {replayed}"
            return (
                f"PostgreSQL on port {sp.port}: {replayed} with the replay settings, then"
                f" restarted with its own settings in {restored.restart_seconds:.1f}s"
            )
        if sp.kind == "mysql":
            return f"mariadbd on port {sp.port}: binlogs replayed to {reached} ({sp.log_target})"
        return f"redis-server on port {sp.port}"

    def start_application(self) -> str:
        from safehold.sources import external
        from safehold.sources.command import parse_command

        for command in self.plan.start:
            external.run(parse_command(command), timeout=self.plan.timeout)
        return f"ran {len(self.plan.start)} start commands"

    # -- health ---------------------------------------------------------------------------

    def _health(self) -> bool:
        if not self.plan.checks:
            return True
        results: dict[str, bool] = {}

        def check(index: int) -> str:
            c = self.plan.checks[index]
            passed, found = run_check(c, self.plan)
            results[c.label] = passed
            if not passed:
                raise _CheckFailed(found)
            return found

        with ThreadPoolExecutor(max_workers=len(self.plan.checks)) as pool:
            futures = [
                pool.submit(self._checked, "health", c.label, functools.partial(check, i))
                for i, c in enumerate(self.plan.checks)
            ]
            for f in futures:
                f.result()
        return all(results.values())

    def _checked(self, name: str, label: str, action: Callable[[], str]) -> None:
        with contextlib.suppress(_CheckFailed):
            self._step(name, label, action)


class _CheckFailed(Exception):
    """A health check that did not pass (recorded in its step; not an error of the run)."""


def teardown(plan: RecoveryPlan, remove: bool = True) -> list[str]:
    """Stop the servers a sandboxed recovery started and remove its target root; returns
    what was done, one sentence each. An in-place recovery is never removed."""
    done: list[str] = []
    for sp in plan.sources:
        if kinds.is_running(sp):
            kinds.stop_source(sp)
            done.append(f"stopped {sp.kind} of {sp.name} (port {sp.port})")
    if remove and plan.target_root and os.path.isdir(plan.target_root):
        shutil.rmtree(plan.target_root)
        done.append(f"removed {plan.target_root}")
    return done
