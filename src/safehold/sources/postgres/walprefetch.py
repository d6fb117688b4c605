"""WAL fetched ahead of a recovering PostgreSQL cluster.

PostgreSQL asks its restore_command for one segment at a time and waits for each; with
``safehold pg wal-fetch`` each ask starts a program and opens the repository, which made
WAL replay the largest part of a recovery's time (bench/recover_run.py: 27 s of 31 for 15
seconds of pgbench WAL). So while the base backup is restored and while PostgreSQL replays,
the segments of the lineage it will read, from the backup's first on, are fetched in order
by a few threads of this process into a spool directory beside the data directory; the
restore_command takes a segment from the spool when it is there (``mv``, no program start)
and asks ``wal-fetch`` otherwise. At most ``WINDOW`` segments wait in the spool, so the disk
it takes is bounded; the spool is removed when recovery has ended. ``safehold recover`` and
``safehold pg restore --start`` both use it; a server started later by its user fetches
every segment with ``wal-fetch`` (no spool there, the restore_command falls back).

PostgreSQL also asks for timeline history files, at its start and again when recovery
ends (the new timeline's and its parent's), each answered "not archived" by a program
start that took seconds on a busy host. So the history files the repository holds go into
the spool first, and each one PostgreSQL may ask for that it does not hold (timeline 1's,
and the one after the newest) is marked absent there, as the segment after the archive's
end is. The last segment taken stays linked in the spool until the next one is taken:
PostgreSQL asks for it again when it starts its new timeline (another program start).
"""

from __future__ import annotations

import os
import shlex
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["WalPrefetcher", "spool_of", "spooled_restore_command"]

WINDOW = 32  # segments waiting in the spool at most (512 MiB of 16 MiB segments)
WORKERS = 4


def spool_of(pgdata: str) -> str:
    return pgdata.rstrip("/") + ".wal-spool"


def spooled_restore_command(spool: str, fallback: str) -> str:
    """restore_command: the spool's segment if it is there, moved, and kept (a hard link,
    ``%f.kept``) until the next one is taken: PostgreSQL asks for the last segment it
    replayed again when it starts its new timeline; "not archived" for a file marked
    absent when the plan was made (asking the repository would start a program only to
    hear so); else ``fallback``."""
    q = shlex.quote(spool)
    return (
        f"if test -f {q}/%f; then rm -f {q}/*.kept; ln {q}/%f {q}/%f.kept 2>/dev/null;"
        f" mv {q}/%f %p; elif test -f {q}/%f.kept; then rm -f %p && cp {q}/%f.kept %p;"
        f" elif test -f {q}/%f.absent; then exit 1; else {fallback}; fi"
    )


class WalPrefetcher:
    """Fetches ``names`` (in replay order) into ``spool``, ``WINDOW`` ahead of PostgreSQL."""

    def __init__(
        self, repo: Repository, system_id: str, names: list[str], spool: str, owner: str
    ) -> None:
        self.repo, self.system_id, self.names, self.spool = repo, system_id, names, spool
        st = os.stat(owner)
        self.uid, self.gid = st.st_uid, st.st_gid
        self.fetched = 0
        self.error: str | None = None
        self.absent: list[str] = []  # the segment after the archive's end; history files
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-prefetch", daemon=True)

    @classmethod
    def for_plan(
        cls, repo: Repository, pg_plan: Any, pgdata: str, *, leave_first: bool = False
    ) -> WalPrefetcher:
        """The segments of ``pg_plan``'s lineage from its base backup's first one on.

        ``leave_first``: the base backup's first segment is left to the restore_command's
        own fetch, so a fetch that fails (the postgres user cannot read the password
        file...) fails the recovery as it would without the spool: the server keeps that
        restore_command once the spool is gone (``pg restore --start``)."""
        from safehold.sources.postgres.catalog import segment_size_of, start_segno
        from safehold.sources.postgres.lineage import lineage_segments
        from safehold.sources.postgres.walarchive import list_wal
        from safehold.sources.postgres.walnames import segment_name

        snap: Snapshot = pg_plan.snapshot
        system_id = str(snap.source["system_id"])
        archived = list(list_wal(repo.store, system_id))
        segments = lineage_segments(pg_plan.lineage, archived, segment_size_of(snap))
        first = start_segno(snap)
        histories = {w.timeline: w.name for w in archived if w.kind == "history"}
        newest = max(histories, default=1)
        names = [histories[t] for t in sorted(histories)]
        absent = [f"{t:08X}.history" for t in range(1, newest + 2) if t not in histories]
        run: list[str] = []
        for segno in sorted(n for n in segments if n >= first):
            if run and segno != first + len(run):
                break  # a gap: recovery stops there (the fallback says why)
            run.append(segments[segno].name)
        if run and len(run) == len([n for n in segments if n >= first]):
            end = first + len(run)  # the archive's end, not a gap
            timeline = pg_plan.lineage.timeline_of_segment(end, segment_size_of(snap))
            absent.append(segment_name(timeline, end, segment_size_of(snap)))
        spooled = run[1:] if leave_first else run
        prefetcher = cls(repo, system_id, names + spooled, spool_of(pgdata), pgdata)
        prefetcher.absent = absent
        return prefetcher

    def start(self) -> WalPrefetcher:
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.spool, self.uid, self.gid)
        for name in self.absent:
            open(os.path.join(self.spool, f"{name}.absent"), "w").close()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop fetching and remove the spool (what PostgreSQL did not take is not needed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        shutil.rmtree(self.spool, ignore_errors=True)

    def _run(self) -> None:
        pending: list[Future[None]] = []
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="wal-fetch") as pool:
            for name in self.names:
                while not self._stop.is_set() and self._waiting(pending) >= WINDOW:
                    time.sleep(0.05)
                if self._stop.is_set() or self.error is not None:
                    break
                pending.append(pool.submit(self._fetch, name))

    def _waiting(self, pending: list[Future[None]]) -> int:
        pending[:] = [f for f in pending if not f.done()]
        try:
            names = os.listdir(self.spool)
            return len(pending) + sum(1 for n in names if not n.endswith((".absent", ".kept")))
        except OSError:
            return 0

    def _fetch(self, name: str) -> None:
        from safehold.errors import SafeholdError
        from safehold.sources.postgres.walarchive import fetch_wal

        if self._stop.is_set():
            return
        try:
            data = fetch_wal(self.repo, self.system_id, name)
            tmp = os.path.join(self.spool, f".{name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            if os.geteuid() == 0:
                os.chown(tmp, self.uid, self.gid)
            os.replace(tmp, os.path.join(self.spool, name))
            self.fetched += 1
        except (SafeholdError, OSError) as exc:  # restore_command's own fetch takes over
            self.error = f"{name}: {exc}"
