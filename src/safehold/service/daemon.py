"""``safehold daemon``: carry out a policy — scheduled jobs, archivers, status, alerts.

One main thread decides (what is due, what may start) and sleeps until the next thing is
due or a job ends; each job runs in a thread of its own that starts the safehold commands
of the job as child processes and waits for them; log archivers and the log followers that
copy archived logs to replicas (``replicate --logs-only --follow``) have their supervisor; the
protection status is evaluated on its own thread every ``status_interval``.

Stopping (SIGTERM, SIGHUP or Ctrl-C): nothing new starts; running jobs get ``stop_grace`` to end
on their own, then are interrupted as by Ctrl-C (a backup stopped so writes no snapshot:
its data without a snapshot is garbage that prune removes), then killed. A second daemon
on the same policy (same state directory) finds the lock taken and refuses to start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from safehold.dr.fields import format_interval
from safehold.dr.jobs import (
    JobCommand,
    archiver_jobs,
    job_commands,
    log_replication_jobs,
    replica_after_backup,
)
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId
from safehold.errors import SafeholdError
from safehold.service.history import JobHistory, JobRun
from safehold.service.paths import HISTORY_FILE, LOCK_FILE
from safehold.service.runner import ChildProcess, CommandResult, start_child
from safehold.service.scheduler import FIRST_BACKUP, PendingRun, Scheduler
from safehold.service.supervisor import Supervisor

if TYPE_CHECKING:
    from safehold.service.alerts import Alerter
    from safehold.service.http.server import HttpServer
    from safehold.service.metrics import MetricsServer

__all__ = ["Daemon", "DaemonAlreadyRunning", "MetricsUnavailable"]

log = logging.getLogger("safehold.daemon")

RETRY_LOCK = "30m"  # jobs wait this long for a repository lock (prune vs backup)
INTERRUPT_WAIT = 30.0
FIRST_STARTED = "first_started"


class DaemonAlreadyRunning(SafeholdError):
    """{0}"""

    exit_code = 11  # as a locked repository: someone else holds it


class MetricsUnavailable(SafeholdError):
    """{0}"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunningJob:
    run: PendingRun
    key: str
    thread: threading.Thread
    children: list[ChildProcess] = field(default_factory=list)
    cancelled: bool = False


def _busy_key(job: JobId) -> str:
    """Runs that may not overlap share a key: one job per source, one per repository task."""
    if job.action == "backup":
        return f"source:{job.target}"
    if job.action == "drill":
        return "drill"  # one drill at a time, whatever the service
    return f"{job.action}:{job.target}:{job.schedule}"


class StateLock:
    """An exclusive ``flock`` on the state directory's lock file, released by the kernel
    when the process dies, so a killed daemon never blocks the next one."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DaemonAlreadyRunning(
                f"another safehold daemon already runs this policy (pid {holder}; lock {self.path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Daemon:
    """The scheduler loop and everything it keeps running; ``run`` returns on stop."""

    def __init__(
        self,
        policy: Policy,
        config_path: str,
        state_dir: Path,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.policy = policy
        self.config_path = config_path
        self.state_dir = state_dir
        self.clock = clock
        self.history: JobHistory | None = None
        self.scheduler = Scheduler(policy)
        self.supervisor: Supervisor | None = None
        self.running: dict[str, RunningJob] = {}
        self.status: Any = None  # the newest dr.status.ProtectionStatus
        self.started_at: datetime | None = None
        self.job_observers: list[Callable[[JobRun], None]] = []
        self.status_observers: list[Callable[[Any], None]] = []
        self.alerter: Alerter | None = None
        self.metrics: MetricsServer | None = None
        self.http: HttpServer | None = None  # the dashboard ([daemon] http)
        self._requested: list[JobId] = []  # "back up now" from the dashboard
        self._lock = StateLock(state_dir)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._mutex = threading.Lock()
        self._finished: list[tuple[RunningJob, str]] = []
        self.extra_args = ["--retry-lock", RETRY_LOCK]

    # -- life cycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop (safe from a signal handler or another thread)."""
        self._stopping.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, handler)

    def run(self) -> None:
        self._lock.acquire()
        try:
            self._run()
        finally:
            self._lock.release()

    def _run(self) -> None:
        history = JobHistory(self.state_dir / HISTORY_FILE)
        self.history = history
        now = self.clock()
        self.started_at = now
        for run in history.close_unfinished(now):
            log.warning(
                "run %s of %s was interrupted by the previous daemon's end", run.id, run.job
            )
        first = history.get_state(FIRST_STARTED)
        if first is None:
            history.put_state(FIRST_STARTED, now.isoformat())
            first = now.isoformat()
        for job in self.scheduler.start(now, history, datetime.fromisoformat(first)):
            log.info("catching up %s: its last slot was missed while the daemon was down", job)
        try:
            self._start_reporting(history, now)
            self._start_dashboard()
        except BaseException:
            history.close()
            raise
        self._start_archivers(history)
        status_thread = threading.Thread(target=self._status_loop, name="status", daemon=True)
        status_thread.start()
        threading.Thread(target=self._publish_runbooks, name="runbook", daemon=True).start()
        threading.Thread(target=self._clean_drills, name="drills", daemon=True).start()
        log.info(
            "daemon started: %d scheduled jobs, %d archivers, state in %s",
            len(self.scheduler.specs),
            len(self.supervisor.states) if self.supervisor else 0,
            self.state_dir,
        )
        try:
            self._loop()
        finally:
            self._shutdown()
            status_thread.join(30)
            if self.alerter is not None:
                self.alerter.close()
            if self.metrics is not None:
                self.metrics.close()
            if self.http is not None:
                self.http.close()
            history.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            now = self.clock()
            self._collect_finished(now)
            with self._mutex:
                requested, self._requested = self._requested, []
            for job in requested:
                self.scheduler.trigger(job, now, "requested")
            self.scheduler.advance(now)
            self._start_ready(now)
            wake = self.scheduler.wake_at()
            timeout = 60.0 if wake is None else (wake - self.clock()).total_seconds()
            self._wake.wait(min(max(timeout, 0.05), 60.0))
            self._wake.clear()

    def _shutdown(self) -> None:
        with self._mutex:
            running = list(self.running.values())
        grace = self.policy.daemon.stop_grace.total_seconds()
        if running:
            log.info("waiting up to %.0f s for %d running jobs", grace, len(running))
        self._join(running, grace)
        for job in running:
            if job.thread.is_alive():
                job.cancelled = True
                for child in job.children:
                    child.interrupt()
        self._join(running, INTERRUPT_WAIT)
        for job in running:
            for child in job.children:
                child.kill()
        self._join(running, 10)
        self._collect_finished(self.clock())
        if self.supervisor is not None:
            self.supervisor.stop()
        log.info("daemon stopped")

    @staticmethod
    def _join(jobs: list[RunningJob], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for job in jobs:
            job.thread.join(max(0.0, deadline - time.monotonic()))

    # -- archivers ------------------------------------------------------------------------

    def _start_archivers(self, history: JobHistory) -> None:
        """The log archivers, and the log followers that carry their logs to replicas."""
        commands: dict[JobId, JobCommand] = {}
        for job in [*archiver_jobs(self.policy), *log_replication_jobs(self.policy)]:
            found = job_commands(self.policy, job)
            if found:
                commands[job] = found[0]
        self.supervisor = Supervisor(commands, history, [], self._notify_run)
        self.supervisor.start()

    # -- alerts and metrics ---------------------------------------------------------------

    def _start_reporting(self, history: JobHistory, now: datetime) -> None:
        from safehold.service.alerts import Alerter

        self.alerter = Alerter(self.policy.daemon.alerts, history, self.config_path)
        self.job_observers.append(self.alerter.job_finished)
        self.status_observers.append(self.alerter.status_computed)
        listen = self.policy.daemon.metrics
        if listen == "off":
            return
        from safehold.service.metrics import DaemonView, SafeholdCollector, serve_metrics

        view = DaemonView(
            self.policy,
            JobHistory(self.state_dir / HISTORY_FILE, readonly=True),  # scrapes read apart
            now,
            status=lambda: self.status,
            archivers=lambda: self.supervisor.states if self.supervisor else {},
        )
        try:
            self.metrics = serve_metrics(listen, SafeholdCollector(view))
        except OSError as exc:
            raise MetricsUnavailable(
                f"cannot serve metrics on {listen}: {exc.strerror or exc} (set [daemon]"
                ' metrics to another HOST:PORT, or "off")'
            ) from None
        log.info("metrics on %s", self.metrics.url)

    def _start_dashboard(self) -> None:
        if self.policy.daemon.http == "off":
            return
        from safehold.service.http.server import build

        self.http = build(
            self.policy,
            self.config_path,
            self.state_dir,
            lambda: self.status,
            self.request_jobs,
            self.policy.daemon.http,
        ).start()
        log.info("dashboard on %s", self.http.url)

    def request_jobs(self, jobs: list[JobId]) -> None:
        """Run ``jobs`` as soon as they may start (safe from any thread)."""
        with self._mutex:
            self._requested.extend(jobs)
        self._wake.set()

    # -- jobs -----------------------------------------------------------------------------

    def _start_ready(self, now: datetime) -> None:
        for run in self.scheduler.ready(now):
            with self._mutex:
                if len(self.running) >= self.policy.daemon.concurrency:
                    return
                key = _busy_key(run.job)
                if key in self.running:
                    continue
                self.scheduler.take(run.job)
                job = RunningJob(run, key, threading.Thread(target=lambda: None))
                job.thread = threading.Thread(
                    target=self._run_job, args=(job,), name=str(run.job), daemon=True
                )
                self.running[key] = job
            job.thread.start()

    def _run_job(self, job: RunningJob) -> None:
        """The job's thread: its commands one after the other, then the outcome."""
        assert self.history is not None
        run = job.run
        history = self.history
        run_id = history.start(
            str(run.job), run.job.action, run.job.target, run.job.schedule, run.slot, run.attempt
        )
        log.info("started %s (%s, attempt %d)", run.job, run.reason, run.attempt)
        try:
            outcome, result, summaries = self._run_commands(job)
        except Exception as exc:  # a bug or an OS error must not lose the run's record
            log.exception("job %s failed to run", run.job)
            outcome, result, summaries = "failed", None, []
            history.finish(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            history.finish(
                run_id,
                outcome,
                bytes_added=_bytes_added(summaries),
                snapshot=_snapshot_id(summaries),
                error=result.error if result is not None and outcome != "success" else None,
                details={"commands": summaries} if summaries else None,
            )
        log.info(
            "%s %s%s",
            run.job,
            outcome,
            f": {result.error}" if result is not None and result.error else "",
        )
        with self._mutex:
            self._finished.append((job, outcome))
            self.running.pop(job.key, None)
        self._notify_run(history.get(run_id))
        self._wake.set()

    def _run_commands(
        self, job: RunningJob
    ) -> tuple[str, CommandResult | None, list[dict[str, Any]]]:
        check_part = self._check_part(job.run.job)
        summaries: list[dict[str, Any]] = []
        result: CommandResult | None = None
        limit = self.policy.daemon.job_timeout
        deadline = time.monotonic() + limit.total_seconds() if limit else None
        for command in job_commands(self.policy, job.run.job, check_part):
            if job.cancelled or (self._stopping.is_set() and not job.children):
                return "cancelled", result, summaries
            child = start_child(command, self.extra_args)
            job.children.append(child)
            result = _wait_until(child, deadline)
            if result.summary is not None:
                summaries.append(result.summary)
            if result.timed_out:
                assert limit is not None
                result.error = f"cut after the job's time limit ({format_interval(limit)})"
                return "failed", result, summaries
            outcome = "cancelled" if job.cancelled else result.outcome
            if outcome not in ("success", "partial"):
                return outcome, result, summaries
        if check_part is not None:
            self._advance_check_part(job.run.job, check_part)
        return (result.outcome if result is not None else "success"), result, summaries

    def _check_part(self, job: JobId) -> str | None:
        """``n/m`` for the rotating check: the part after the one the last check read."""
        subset = self.policy.daemon.check.read_data_subset
        if job.action != "check" or "/" not in subset or self.history is None:
            return None
        total = int(subset.split("/")[1])
        part = self.history.get_state(f"check_part:{job.target}") or int(subset.split("/")[0])
        return f"{(int(part) - 1) % total + 1}/{total}"

    def _advance_check_part(self, job: JobId, part: str) -> None:
        assert self.history is not None
        done, total = (int(x) for x in part.split("/"))
        self.history.put_state(f"check_part:{job.target}", done % total + 1)

    def _collect_finished(self, now: datetime) -> None:
        """Retries for failed runs; replication after each successful backup."""
        with self._mutex:
            finished, self._finished = self._finished, []
        for job, outcome in finished:
            run = job.run
            if outcome == "failed" and not self._stopping.is_set():
                again = self.scheduler.retry(run, now)
                if again is not None:
                    log.info("will retry %s at %s", run.job, again.not_before.isoformat())
            if outcome in ("success", "partial") and run.job.action == "backup":
                self._replicate_after(run.job, now)

    def _replicate_after(self, job: JobId, now: datetime) -> None:
        if job.schedule == "logs":
            return
        from safehold.dr.jobs import find_source

        service, _ = find_source(self.policy, job.target)
        repository = self.policy.repository_of(service)
        for location in replica_after_backup(self.policy, repository):
            self.scheduler.trigger(JobId("replicate", repository, location), now, "after backup")

    def _notify_run(self, run: JobRun) -> None:
        """Tell the observers (alerts) about a run's final outcome; a failed run that will be
        retried is not final yet."""
        archiver = self.supervisor is not None and any(
            str(job) == run.job for job in self.supervisor.states
        )
        retried = run.outcome == "failed" and run.attempt <= self.policy.daemon.retries
        if retried and not archiver:
            return
        for observer in self.job_observers:
            try:
                observer(run)
            except Exception:
                log.exception("job observer failed")

    def _clean_drills(self) -> None:
        """Tear down what a drill killed with the previous daemon left: its servers, its
        sandbox (dr/drill/sandbox.py)."""
        from safehold.dr.drill.sandbox import cleanup_abandoned

        try:
            for done in cleanup_abandoned(str(self.state_dir)):
                log.warning("%s", done)
        except Exception:
            log.exception("could not clean up the sandboxes of interrupted drills")

    def _publish_runbooks(self) -> None:
        """Each service's runbook into the state directory and its repository, where the
        recovery procedure is found when this host is gone (dr/runbook.py)."""
        from safehold.dr.runbook import publish_runbooks
        from safehold.dr.status import open_policy_repository

        try:
            for done in publish_runbooks(
                self.policy, self.config_path, str(self.state_dir), open_policy_repository
            ):
                log.info("%s", done)
        except Exception as exc:  # the store may be down: the next start tries again
            log.warning("could not store the runbooks: %s", exc)

    # -- status ---------------------------------------------------------------------------

    def _status_loop(self) -> None:
        interval = self.policy.daemon.status_interval.total_seconds()
        while not self._stopping.is_set():
            self.evaluate_status()
            self._stopping.wait(interval)

    def _backups_under_way(self) -> set[str]:
        """``SERVICE/SOURCE`` of every backup running, or queued as a source's first: the
        status thread asks before a job's thread may have recorded its start."""
        with self._mutex:
            running = [job.run.job for job in self.running.values()]
            queued = [
                r.job for r in list(self.scheduler.pending.values()) if r.reason == FIRST_BACKUP
            ]
        return {job.target for job in running + queued if job.action == "backup"}

    def evaluate_status(self) -> None:
        from safehold.dr.status import evaluate

        try:
            status = evaluate(
                self.policy,
                self.clock(),
                self.history,
                under_way=self._backups_under_way(),
                state_dir=str(self.state_dir),
            )
        except Exception:
            log.exception("status evaluation failed")
            return
        self.status = status
        for observer in self.status_observers:
            try:
                observer(status)
            except Exception:
                log.exception("status observer failed")


def _wait_until(child: ChildProcess, deadline: float | None) -> CommandResult:
    """The child's result; past ``deadline`` it is interrupted as by Ctrl-C (no snapshot is
    written), then killed if it does not stop within INTERRUPT_WAIT."""
    if deadline is None:
        return child.wait()
    try:
        return child.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        child.interrupt()
    try:
        result = child.wait(INTERRUPT_WAIT)
    except subprocess.TimeoutExpired:
        child.kill()
        result = child.wait()
    result.timed_out = True
    return result


def _snapshot_id(summaries: list[dict[str, Any]]) -> str | None:
    for summary in summaries:
        if isinstance(summary.get("snapshot_id"), str):
            return str(summary["snapshot_id"])
    return None


def _bytes_added(summaries: list[dict[str, Any]]) -> int | None:
    total = None
    for summary in summaries:
        for key in ("data_added", "bytes_copied"):
            value = summary.get(key)
            if isinstance(value, int):
                total = (total or 0) + value
    return total
