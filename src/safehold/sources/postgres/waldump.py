"""The commits in an archived WAL segment, read with pg_waldump.

Commit and abort records are what a time target is compared with (PostgreSQL stops
before the first one whose time is after the target), and what ``pg_last_xact_replay
_timestamp()`` reports; their transaction id is what an xid target names.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime

from safehold.repo.repository import Repository
from safehold.sources import external
from safehold.sources.postgres.walarchive import fetch_wal
from safehold.sources.postgres.walnames import parse_lsn

__all__ = ["Commit", "segment_commits"]

COMMIT = re.compile(
    r"tx: +(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev [^,]*, desc: (?:COMMIT|ABORT) "
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\S+)"
)


@dataclass(frozen=True)
class Commit:
    """One commit (or abort) record: its transaction, where it starts, the time it carries."""

    xid: int
    lsn: int
    time: datetime


def segment_commits(repo: Repository, system_id: str, name: str, pg_bin: str) -> list[Commit]:
    """The commit and abort records of one archived segment, in WAL order."""
    data = fetch_wal(repo, system_id, name)
    with tempfile.TemporaryDirectory(prefix="safehold-waldump-") as tmp:
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
        proc = external.run(
            [os.path.join(pg_bin, "pg_waldump"), "-p", tmp, "-r", "Transaction", name], check=False
        )
    found = []
    for m in COMMIT.finditer(proc.stdout.decode(errors="replace")):
        stamp = datetime.fromisoformat(m.group(3)).replace(
            tzinfo=UTC if m.group(4) == "UTC" else None
        )
        if stamp.tzinfo is None:
            stamp = stamp.astimezone()
        found.append(Commit(int(m.group(1)), parse_lsn(m.group(2)), stamp))
    return found
