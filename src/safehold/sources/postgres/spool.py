"""Asynchronous archiving, the archive_command side: wait for the pusher's word on a file.

With ``safehold pg wal-pusher`` running, PostgreSQL's archive_command does not upload
anything: the pusher (one process, the repository opened once) watches
``pg_wal/archive_status/*.ready`` and uploads segments as soon as they are complete,
several at once, then leaves ``<spool>/<file>.ok`` (or ``.error`` with the reason). The
archive_command waits for that mark, removes it and reports success, so PostgreSQL
recycles a segment only once it is in the repository, as in synchronous mode.

The pusher touches ``<spool>/.pusher-alive`` every second while it runs and removes it
when it stops. Without a fresh heartbeat (or without the spool directory) the
archive_command fails at once with one line instead of waiting for a mark that cannot
come: PostgreSQL retries, and a fast shutdown does not hang on archiving.

This module imports nothing heavy, so that the archive_command can be
``python3 -m safehold.sources.postgres.spool SPOOL %p`` and start in a few milliseconds;
``safehold pg wal-push --spool SPOOL %p`` does the same with the CLI's start-up cost.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["ERROR", "HEARTBEAT", "OK", "main", "pusher_missing", "wait_for_push"]

OK = ".ok"
ERROR = ".error"
HEARTBEAT = ".pusher-alive"
HEARTBEAT_STALE = 10.0  # seconds without a touch: the pusher is gone
POLL = 0.02


def pusher_missing(spool: str) -> str | None:
    """Why no pusher serves ``spool`` (a missing directory, no fresh heartbeat), or None."""
    if not os.path.isdir(spool):
        return f"spool directory {spool} does not exist: is archive_command meant for this host?"
    try:
        age = time.time() - os.stat(os.path.join(spool, HEARTBEAT)).st_mtime
    except FileNotFoundError:
        return f"no `safehold pg wal-pusher --spool {spool}` is running"
    if age > HEARTBEAT_STALE:
        return f"no `safehold pg wal-pusher --spool {spool}` is running (silent for {age:.0f} s)"
    return None


def wait_for_push(spool: str, wal_path: str, timeout: float = 60.0) -> str | None:
    """None once the pusher has archived the file, else why not (for PostgreSQL's log)."""
    name = os.path.basename(wal_path)
    ok, error = os.path.join(spool, name + OK), os.path.join(spool, name + ERROR)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.unlink(ok)
            return None
        except FileNotFoundError:
            pass
        try:
            with open(error, errors="replace") as f:
                return f"the pusher could not archive {name}: {f.read().strip()}"
        except FileNotFoundError:
            pass
        missing = pusher_missing(spool)
        if missing:
            return f"{name} not archived: {missing}"
        if time.monotonic() > deadline:
            return (
                f"{name} was not archived within {timeout:.0f} s: is `safehold pg wal-pusher "
                f"--spool {spool}` running?"
            )
        time.sleep(POLL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m safehold.sources.postgres.spool SPOOL_DIR %p\n")
        return 2
    problem = wait_for_push(args[0], args[1])
    if problem:
        sys.stderr.write(f"safehold: {problem}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
