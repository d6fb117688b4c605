"""Asynchronous archiving, the uploading side: ``safehold pg wal-pusher``.

One long-running process per cluster: the repository is opened once (one key
derivation), complete WAL files are found by their ``.ready`` marks in
``pg_wal/archive_status`` (PostgreSQL writes the mark only once the file is complete) and
uploaded by a few threads (zstd and AES-GCM release the GIL), each followed by a
``<spool>/<file>.ok`` mark for the waiting archive_command (``spool.py``). A failure
leaves ``<file>.error`` and is retried after a pause; nothing is ever marked done that is
not stored. ``<spool>/.pusher-alive`` is touched every second while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from safehold.repo.repository import Repository
from safehold.sources.postgres.lineage import claim_timeline, timeline_to_claim
from safehold.sources.postgres.spool import ERROR, HEARTBEAT, OK
from safehold.sources.postgres.walarchive import push_wal
from safehold.sources.postgres.walnames import read_system_id

__all__ = ["WalPusher"]

log = logging.getLogger("safehold.pg.pusher")
SCAN_INTERVAL = 0.05
RETRY_AFTER = 1.0
HEARTBEAT_EVERY = 1.0


class WalPusher:
    def __init__(
        self, repo: Repository, pgdata: str, spool: str, workers: int = 2, primary: bool = False
    ) -> None:
        self.repo = repo
        self.primary = primary  # a .history it archives claims that timeline (lineage.py)
        self.pgdata = pgdata
        self.spool = spool
        self.system_id = read_system_id(pgdata)
        self.pushed = 0
        self._pool = ThreadPoolExecutor(workers)
        self._busy: dict[str, Future[None]] = {}
        self._failed_at: dict[str, float] = {}
        self._stop = threading.Event()
        os.makedirs(spool, exist_ok=True)

    def stop(self) -> None:
        self._stop.set()

    def run(self, on_push: Callable[[str], None] | None = None) -> None:
        heartbeat = os.path.join(self.spool, HEARTBEAT)
        touched = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - touched >= HEARTBEAT_EVERY:
                    _write_mark(heartbeat, str(os.getpid()))
                    touched = time.monotonic()
                self.scan(on_push)
                self._stop.wait(SCAN_INTERVAL)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(heartbeat)  # archive_command fails at once from now on
            self._pool.shutdown(wait=True)

    def scan(self, on_push: Callable[[str], None] | None = None) -> None:
        status = os.path.join(self.pgdata, "pg_wal", "archive_status")
        try:
            ready = sorted(n[: -len(".ready")] for n in os.listdir(status) if n.endswith(".ready"))
        except FileNotFoundError:
            return
        for name, future in list(self._busy.items()):
            if future.done():
                del self._busy[name]
        now = time.monotonic()
        for name in ready:
            if name in self._busy or os.path.exists(os.path.join(self.spool, name + OK)):
                continue
            if now - self._failed_at.get(name, -RETRY_AFTER) < RETRY_AFTER:
                continue
            self._busy[name] = self._pool.submit(self._push, name, on_push)
        self._forget_finished(set(ready))

    def _push(self, name: str, on_push: Callable[[str], None] | None) -> None:
        error_mark = os.path.join(self.spool, name + ERROR)
        try:
            with open(os.path.join(self.pgdata, "pg_wal", name), "rb") as f:
                data = f.read()
            if push_wal(self.repo, self.system_id, name, data) == "refused-partial":
                log.warning("%s differs from the archived copy, which is kept: refused", name)
            claim = timeline_to_claim(self.pgdata, name) if self.primary else None
            if claim is not None:
                claim_timeline(self.repo, self.system_id, claim)
        except Exception as exc:  # reported to the archive_command, retried later
            self._failed_at[name] = time.monotonic()
            log.warning("cannot archive %s: %s", name, exc)
            _write_mark(error_mark, str(exc))
            return
        self._failed_at.pop(name, None)
        if os.path.exists(error_mark):
            os.unlink(error_mark)
        _write_mark(os.path.join(self.spool, name + OK), "")
        self.pushed += 1
        if on_push is not None:
            on_push(name)

    def _forget_finished(self, ready: set[str]) -> None:
        """Drop marks of files PostgreSQL no longer waits for."""
        for entry in os.listdir(self.spool):
            name = entry.rsplit(".", 1)[0]
            if name in ready or name in self._busy:
                continue
            # .ready gone: PostgreSQL ran the archive_command to success (which took the
            # .ok) or gave the file up; a mark left now is stale (a second push raced it)
            if entry.endswith((OK, ERROR)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.spool, entry))


def _write_mark(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
