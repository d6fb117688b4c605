"""Asynchronous archiving, the archive_command side: wait for the pusher's word on a file.

With ``safehold pg wal-pusher`` running, PostgreSQL's archive_command does not upload
anything: the pusher (one process, the repository opened once) watches
``pg_wal/archive_status/*.ready`` and uploads segments as soon as they are complete,
several at once, then leaves ``<spool>/<file>.ok`` (or ``.error`` with the reason). The
archive_command waits for that mark, removes it and reports success, so PostgreSQL
recycles a segment only once it is in the repository, as in synchronous mode.

This module imports nothing heavy, so that the archive_command can be
``python3 -m safehold.sources.postgres.spool SPOOL %p`` and start in a few milliseconds;
``safehold pg wal-push --spool SPOOL %p`` does the same with the CLI's start-up cost.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["ERROR", "OK", "main", "wait_for_push"]

OK = ".ok"
ERROR = ".error"
POLL = 0.02


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
