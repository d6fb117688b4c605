"""What the dashboard reads, and the two things it may ask: a backup or a drill now.

``Dashboard`` is built once, by the daemon (its live status, its scheduler) or by
``safehold serve`` (a status loop of its own, no scheduler), and shared by the API and
the pages, so that both show the same documents. Repositories are opened once and their
snapshot lists kept for a few seconds: a page that shows one service must not pay for a
key derivation and a listing of the whole store each time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safehold.dr.drill.report import DrillReport
from safehold.dr.drill.store import stored_reports
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId
from safehold.dr.status import ProtectionStatus, evaluate, open_policy_repository
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.service.history import JobHistory
from safehold.service.http.redact import Redactor
from safehold.service.paths import HISTORY_FILE

__all__ = ["Dashboard", "Missing", "StatusLoop", "UnknownService", "backup_jobs", "drill_job"]

log = logging.getLogger("safehold.http")

SNAPSHOT_TTL = 5.0  # seconds a repository's snapshot list is reused
INDEX_TTL = 30.0  # seconds its index is reused for browsing trees


class Missing(InvalidArgument):
    """{0}"""  # answered 404


class UnknownService(Missing):
    """unknown service {0!r}"""


def drill_job(service: str) -> JobId:
    """The job "run drill now" starts: the daemon's drill of the service (its policy's
    ``point``, at low priority, one drill at a time)."""
    return JobId("drill", service, "drill")


def backup_jobs(policy: Policy, service: str) -> list[JobId]:
    """The jobs "back up now" starts: per source its ``backup`` schedule, else ``full``,
    else its first schedule that is not the continuous log archiving."""
    jobs = []
    for source in policy.services[service].sources:
        names = [name for name in source.effective_schedules() if name != "logs"]
        for preferred in ("backup", "full", *names):
            if preferred in names:
                jobs.append(JobId("backup", f"{service}/{source.name}", preferred))
                break
    return jobs


@dataclass
class _OpenRepository:
    repo: Repository
    snapshots: list[Snapshot] = field(default_factory=list)
    listed: float = float("-inf")
    drills: list[DrillReport] = field(default_factory=list)
    drills_listed: float = float("-inf")
    indexed: float = float("-inf")
    indexed_snapshots: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Dashboard:
    """The policy and live state behind every page and document."""

    policy: Policy
    config_path: str
    state_dir: Path
    status: Callable[[], ProtectionStatus | None]
    redactor: Redactor
    request_jobs: Callable[[list[JobId]], None] | None = None  # None: no daemon to ask
    _history: JobHistory | None = None
    _repositories: dict[str, _OpenRepository] = field(default_factory=dict)
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    # -- documents ------------------------------------------------------------------

    def status_doc(self) -> dict[str, Any] | None:
        """``safehold status --json``'s document (None until the first evaluation)."""
        current = self.status()
        if current is None:
            return None
        return self.redactor.doc({**current.to_dict(), "config": self.config_path})

    def service_doc(self, name: str) -> dict[str, Any] | None:
        self.check_service(name)
        doc = self.status_doc()
        if doc is None:
            return None
        found: dict[str, Any] = next(s for s in doc["services"] if s["name"] == name)
        return found

    def check_service(self, name: str) -> None:
        if name not in self.policy.services:
            raise UnknownService(name)

    # -- the job history ------------------------------------------------------------

    def history(self) -> JobHistory | None:
        """The daemon's history, read-only; None until a daemon has made one."""
        with self._mutex:
            if self._history is None:
                path = self.state_dir / HISTORY_FILE
                if not path.exists():
                    return None
                self._history = JobHistory(path, readonly=True)
            return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.close()

    # -- repositories ---------------------------------------------------------------

    def _opened(self, name: str) -> _OpenRepository:
        with self._mutex:
            found = self._repositories.get(name)
        if found is None:
            found = _OpenRepository(open_policy_repository(self.policy.repositories[name]))
            with self._mutex:
                found = self._repositories.setdefault(name, found)
        return found

    def snapshots(self, repository: str, refresh: bool = False) -> list[Snapshot]:
        """The repository's snapshots, oldest first, at most SNAPSHOT_TTL seconds old
        (``refresh``: listed now)."""
        opened = self._opened(repository)
        with opened.lock:
            if refresh or time.monotonic() - opened.listed > SNAPSHOT_TTL:
                opened.snapshots = opened.repo.list_snapshots()
                opened.listed = time.monotonic()
            return opened.snapshots

    def repository(self, name: str) -> Repository:
        return self._opened(name).repo

    def drills(self, repository: str) -> list[DrillReport]:
        """The drill reports stored in the repository, oldest first, at most SNAPSHOT_TTL
        seconds old (each is a document to fetch and decrypt: the overview shows them)."""
        opened = self._opened(repository)
        with opened.lock:
            if time.monotonic() - opened.drills_listed > SNAPSHOT_TTL:
                opened.drills = stored_reports(opened.repo)
                opened.drills_listed = time.monotonic()
            return opened.drills

    def browsable(self, repository: str, snapshot: Snapshot) -> Repository:
        """The repository with an index that holds ``snapshot``'s blobs: reloaded every
        INDEX_TTL seconds, and at once for a snapshot newer than the index. Snapshots are
        listed before the index is read, and a backup writes its index before its
        snapshot, so every snapshot listed then is covered."""
        opened = self._opened(repository)
        with opened.lock:
            stale = time.monotonic() - opened.indexed > INDEX_TTL
            if stale or snapshot.id not in opened.indexed_snapshots:
                listed = opened.repo.list_snapshots()
                opened.repo.load_index()
                opened.indexed = opened.listed = time.monotonic()
                opened.snapshots = listed
                opened.indexed_snapshots = {s.id for s in listed}
            return opened.repo


class StatusLoop:
    """``safehold serve``'s own protection status: evaluated now and every
    ``status_interval`` on a thread, with the daemon's history read-only when it exists
    (as ``safehold status`` does)."""

    def __init__(self, policy: Policy, state_dir: Path) -> None:
        self.policy = policy
        self.state_dir = state_dir
        self.latest: ProtectionStatus | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status", daemon=True)

    def start(self) -> StatusLoop:
        self.evaluate()
        self._thread.start()
        return self

    def evaluate(self) -> None:
        path = self.state_dir / HISTORY_FILE
        history = JobHistory(path, readonly=True) if path.exists() else None
        try:
            self.latest = evaluate(self.policy, datetime.now(UTC), history)
        finally:
            if history is not None:
                history.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.policy.daemon.status_interval.total_seconds()):
            try:
                self.evaluate()
            except Exception:  # the next round may succeed; the pages keep the last one
                log.exception("status evaluation failed")

    def stop(self) -> None:
        self._stop.set()
