"""Keep the continuous log archivers running: ``pg wal-pusher``, ``mysql binlog-archive``.

An archiver that exits is restarted after a delay that doubles with each quick exit (up
to five minutes) and starts again from one second once it has stayed up for ten minutes,
as systemd's and Patroni's restart loops do. Each exit is a failed run in the job history,
so it reaches the alerts and the metrics like any failed job.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from safehold.dr.jobs import JobCommand
from safehold.dr.schedule import JobId
from safehold.service.history import JobHistory, JobRun
from safehold.service.runner import ChildProcess, start_child

__all__ = ["ArchiverState", "Supervisor"]

log = logging.getLogger("safehold.daemon")

FIRST_DELAY = 1.0
UP_AGAIN_AFTER = 30.0
MAX_DELAY = 300.0
STABLE_AFTER = 600.0
STOP_WAIT = 30.0


@dataclass
class ArchiverState:
    up: bool = False
    restarts: int = 0
    since: datetime | None = None  # when it last came up or went down
    last_error: str | None = None


class RunObserver(Protocol):
    def __call__(self, run: JobRun) -> None: ...


class Supervisor:
    """One thread per archiver; ``stop`` asks each to finish (SIGTERM) and waits."""

    def __init__(
        self,
        archivers: dict[JobId, JobCommand],
        history: JobHistory,
        extra_args: list[str],
        on_exit: RunObserver,
    ) -> None:
        self.states = {job: ArchiverState() for job in archivers}
        self._commands = archivers
        self._history = history
        self._extra_args = extra_args
        self._on_exit = on_exit
        self._stopping = threading.Event()
        self._children: dict[JobId, ChildProcess] = {}
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._keep_running, args=(job,), name=f"archiver {job}")
            for job in archivers
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for child in self._children.values():
                child.terminate()
        deadline = time.monotonic() + STOP_WAIT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for child in self._children.values():
                child.kill()
        for thread in self._threads:
            thread.join(5)

    def _keep_running(self, job: JobId) -> None:
        delay = FIRST_DELAY
        state = self.states[job]
        while not self._stopping.is_set():
            run_id = self._history.start(str(job), job.action, job.target, job.schedule, None)
            started = time.monotonic()
            with self._lock:
                child = start_child(self._commands[job], self._extra_args)
                self._children[job] = child
            state.up, state.since = True, datetime.now(UTC)
            log.info("archiver %s started (pid %d)", job, child.pid)
            self._watch(job, child, started, recovering=state.restarts > 0)
            result = child.wait()
            with self._lock:
                self._children.pop(job, None)
            state.up, state.since = False, datetime.now(UTC)
            if self._stopping.is_set():
                self._history.finish(run_id, "cancelled", error="stopped with the daemon")
                return
            state.restarts += 1
            state.last_error = result.error
            self._history.finish(
                run_id, "failed", error=result.error or f"exited {result.returncode}"
            )
            self._on_exit(self._history.get(run_id))
            if time.monotonic() - started > STABLE_AFTER:
                delay = FIRST_DELAY
            log.warning(
                "archiver %s exited %d (%s); restarting in %.0f s",
                job,
                result.returncode,
                result.error,
                delay,
            )
            self._stopping.wait(delay)
            delay = min(delay * 2, MAX_DELAY)

    def _watch(self, job: JobId, child: ChildProcess, started: float, recovering: bool) -> None:
        """Wait for ``child`` to exit; an archiver that failed before and has now stayed up
        for UP_AGAIN_AFTER seconds is recorded as a successful run, which resolves its
        alert."""
        while child.poll() is None:
            if recovering and time.monotonic() - started > UP_AGAIN_AFTER:
                recovering = False
                run_id = self._history.start(str(job), job.action, job.target, job.schedule, None)
                self._history.finish(run_id, "success", details={"archiver": "up again"})
                self._on_exit(self._history.get(run_id))
            time.sleep(0.5)
