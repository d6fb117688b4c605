"""Carrying out one drill: measure the live sources, choose the point, make the sandbox,
let the recovery engine restore and start everything there (refusing any overlap with
the live service first), run its health checks plus the drill's own and the built-in data
checks, measure RTO and RPO against the objectives, tear down (unless kept), report."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from safehold.dr.drill.checks import check_source
from safehold.dr.drill.measure import live_newest
from safehold.dr.drill.point import Window, choose_moment, recoverable_window
from safehold.dr.drill.report import (
    CHECK_FAILED,
    FAILED,
    OBJECTIVE_MISSED,
    PASSED,
    REFUSED,
    CheckResult,
    DrillReport,
)
from safehold.dr.drill.sandbox import cleanup_abandoned, make_sandbox, refuse_overlap, release
from safehold.dr.drill.space import add_wal_to_estimate
from safehold.dr.plan import resolve_objectives
from safehold.dr.policy import Policy
from safehold.dr.recovery.plan import (
    Moment,
    RecoveryPlan,
    SourcePlan,
    open_readable_copy,
    plan_checks,
)
from safehold.dr.recovery.report import FAILED as STEP_FAILED
from safehold.dr.recovery.report import OK, Observer, StepRecord, utcnow
from safehold.dr.recovery.session import RecoveryRequest, prepare
from safehold.dr.recovery.steps import Recovery, teardown
from safehold.errors import (
    DrillCheckFailed,
    DrillObjectiveMissed,
    Interrupted,
    RecoveryRefused,
    SafeholdError,
)
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time, parse_time

__all__ = ["Drill", "DrillRequest", "judge", "outcome_error"]


@dataclass
class DrillRequest:
    service: str
    state_dir: str
    point: str = "latest"  # latest, random, a time, cut:ID
    sandbox_parent: str | None = None  # where the sandbox directory is made (default: TMPDIR)
    rng: random.Random | None = None


def _quiet(_record: StepRecord) -> None:
    pass


class Drill:
    """One drill of one service."""

    def __init__(
        self,
        policy: Policy,
        request: DrillRequest,
        observer: Observer = _quiet,
        opener: Callable[[Any], Repository] | None = None,
    ) -> None:
        self.policy = policy
        self.request = request
        self.observer = observer
        self.opener = opener
        self.repo: Repository | None = None
        self.recovery: Recovery | None = None
        self.root: str | None = None
        self.window: Window | None = None
        started = utcnow()
        self.started = started
        self.report = DrillReport(
            id=started.strftime("%Y%m%dT%H%M%S%fZ"),
            service=request.service,
            started=started.isoformat(),
            point_spec=request.point,
            nice=os.getpriority(os.PRIO_PROCESS, 0),
        )
        objectives = resolve_objectives(policy, request.service)
        self.report.objectives = {
            k: objectives[k].value.total_seconds() if k in objectives else None
            for k in ("rto", "rpo")
        }

    # -- the run --------------------------------------------------------------------------

    def run(self) -> DrillReport:
        """Every step; the report says how it ended (``error()`` raises it)."""
        r = self.report
        for done in cleanup_abandoned(self.request.state_dir):
            r.teardown.append(done)
        svc = self.policy.services[self.request.service]
        live = {s.name: live_newest(s, self.started) for s in svc.sources}
        try:
            self._recover()
        except RecoveryRefused as exc:
            r.outcome, r.error = REFUSED, str(exc)
        except Interrupted:
            raise
        except (SafeholdError, OSError) as exc:
            r.outcome, r.error = FAILED, str(exc)
        rec = self.recovery.report if self.recovery is not None else None
        if rec is not None and rec.outcome in ("recovered", "unhealthy"):
            self._verify()
        if rec is not None:
            r.steps = [s.to_doc() | {"message_type": None} for s in rec.steps]
            r.sources = [vars(s).copy() for s in rec.sources.values()]
            r.point = rec.plan.get("point")
            if rec.outcome == "failed":
                r.outcome, r.error = FAILED, rec.error
            elif rec.outcome == "refused":
                r.outcome, r.error = REFUSED, rec.error
        r.checks = self._health_results() + r.checks
        if r.outcome is None:
            self._measure(live)
            r.outcome = judge(r)
        r.ended = utcnow().isoformat()
        return r

    def _recover(self) -> None:
        """The engine opens the repository for ``latest``; another point needs the window
        first, and the engine then reads the copy already open."""
        from safehold.dr.status import open_policy_repository

        opener = self.opener or open_policy_repository
        moment = Moment("latest")  # resolved by the engine's plan
        if self.request.point != "latest":
            repo, _location, _note = open_readable_copy(self.policy, self.request.service, opener)
            window = recoverable_window(self.policy, self.request.service, repo)
            self.window = window
            self.report.window = {
                "oldest": format_time(window.oldest),
                "newest": format_time(window.newest),
            }
            moment = choose_moment(self.request.point, window, self.request.rng)
            opener = _opened(repo)
        self.report.moment = moment.text()
        self.root = make_sandbox(
            self.request.sandbox_parent, self.request.state_dir, self.request.service
        )
        request = RecoveryRequest(self.request.service, moment, target_root=self.root)
        recovery = prepare(self.policy, request, self.observer, opener=opener)
        self.repo, self.report.location = recovery.repo, recovery.plan.location
        repo = recovery.repo
        refuse_overlap(self.policy, recovery.plan)
        add_wal_to_estimate(repo, recovery.plan)
        drill = self.policy.services[self.request.service].drill
        if drill is not None and drill.checks:
            recovery.plan.checks += plan_checks(recovery.plan, drill.checks)
            recovery.report.plan = recovery.plan.to_doc()
        self.recovery = recovery
        self.report.sandbox = _reach(recovery.plan)
        recovery.run()

    # -- checks ---------------------------------------------------------------------------

    def _verify(self) -> None:
        """The built-in data check of every restored source, all at once."""
        assert self.recovery is not None and self.repo is not None
        recovery = self.recovery
        with ThreadPoolExecutor(max_workers=max(1, len(recovery.plan.sources))) as pool:
            results = list(pool.map(self._verify_one, recovery.plan.sources))
        self.report.checks += results

    def _verify_one(self, sp: SourcePlan) -> CheckResult:
        assert self.recovery is not None and self.repo is not None
        record = self.recovery.report.begin("verify", sp.name)
        self.observer(record)
        outcome = self.recovery.report.sources[sp.name]
        snap = self.recovery.snapshots.get(sp.snapshot_id)
        if snap is None or not outcome.restored:
            passed, detail, figures = False, "not restored", dict[str, Any]()
        else:
            try:
                passed, detail, figures = check_source(self.repo, snap, sp, outcome)
            except (SafeholdError, OSError) as exc:
                passed, detail, figures = False, str(exc), {}
        record.finish(OK if passed else STEP_FAILED, detail)
        self.observer(record)
        return CheckResult(
            f"{sp.name} data", sp.kind, sp.name, passed, detail, record.seconds, figures
        )

    def _health_results(self) -> list[CheckResult]:
        """The engine's health checks (the recovery table's and the drill's) as results."""
        if self.recovery is None:
            return []
        kinds = {c.label: c.kind for c in self.recovery.plan.checks}
        return [
            CheckResult(
                str(s.source),
                kinds.get(str(s.source), "?"),
                None,
                s.outcome == OK,
                s.detail,
                s.seconds,
            )
            for s in self.recovery.report.steps
            if s.step == "health" and s.outcome is not None
        ]

    # -- measures -------------------------------------------------------------------------

    def _measure(self, live: dict[str, tuple[datetime, str]]) -> None:
        """RTO: the drill's start to its last check green. RPO: each live source's newest
        data against what the drill recovered of it (``latest``) or, for an older point,
        the newest the repository could have recovered (the exposure a disaster at the
        drill's start would have had)."""
        r = self.report
        ends = [parse_time(s["ended"]) for s in r.steps if s.get("ended")]
        if r.checks and all(c.passed for c in r.checks) and ends:
            r.rto_seconds = round((max(ends) - self.started).total_seconds(), 3)
        assert self.recovery is not None
        latest = self.recovery.plan.moment.kind == "latest"
        for name, (newest, basis) in live.items():
            outcome = self.recovery.report.sources[name]
            if latest:
                recovered = parse_time(outcome.reached or outcome.point)
            else:
                assert self.window is not None
                recovered = self.window.newest_by_source[name]
            age = max(0.0, (newest - recovered).total_seconds())
            r.rpo_sources[name] = {
                "recovered": format_time(recovered),
                "live_newest": format_time(newest),
                "seconds": round(age, 3),
                "basis": basis,
            }
        r.rpo_seconds = max((x["seconds"] for x in r.rpo_sources.values()), default=None)

    def error(self) -> SafeholdError | None:
        """The error that matches the outcome, for the exit code."""
        return outcome_error(self.report)

    # -- teardown -------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Stop the sandbox's servers, remove its directory, forget its marker."""
        done: list[str] = []
        if self.recovery is not None:
            done += teardown(self.recovery.plan)
        if self.root is not None:
            if os.path.isdir(self.root):
                shutil.rmtree(self.root)
                done.append(f"removed {self.root}")
            release(self.request.state_dir, self.root)
        self.report.teardown += done
        return done


def _reach(plan: RecoveryPlan) -> dict[str, Any]:
    """How to reach a kept sandbox: its directory, and each source's path and port."""
    return {
        "root": plan.target_root,
        "sources": {
            sp.name: {"kind": sp.kind, "target": sp.target, "host": sp.host, "port": sp.port}
            for sp in plan.sources
        },
    }


def judge(r: DrillReport) -> str:
    """The outcome of a measured drill (its error set to say why it did not pass)."""
    failed = [c for c in r.checks if not c.passed]
    if failed:
        r.error = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return CHECK_FAILED
    missed = []
    if r.rto_met is False:
        missed.append(f"achieved RTO {r.rto_seconds:.1f}s > objective {r.objectives['rto']:.0f}s")
    if r.rpo_met is False:
        missed.append(f"achieved RPO {r.rpo_seconds:.1f}s > objective {r.objectives['rpo']:.0f}s")
    if missed:
        r.error = "; ".join(missed)
        return OBJECTIVE_MISSED
    return PASSED


def outcome_error(r: DrillReport) -> SafeholdError | None:
    """The error that matches a drill's outcome, for the exit code."""
    if r.outcome == REFUSED:
        return RecoveryRefused(str(r.error).removeprefix("Recovery refused, nothing was written: "))
    if r.outcome in (FAILED, CHECK_FAILED):
        return DrillCheckFailed(r.service, r.error)
    if r.outcome == OBJECTIVE_MISSED:
        return DrillObjectiveMissed(r.service, r.error)
    return None


def _opened(repo: Repository) -> Callable[[Any], Repository]:
    """An opener that hands the engine a repository already open."""

    def opener(_configured: Any) -> Repository:
        return repo

    return opener
