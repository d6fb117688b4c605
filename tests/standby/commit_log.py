"""A writer's log of acknowledged commits through HAProxy, with quiet moments to restore to,
and a stalled archiver: what the archive-across-failover test checks its PITR against."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from safehold.dr.standby.processes import process_tree
from tests.standby.servers import wait_for

TABLE = "archive_failover"
QUIET = 1.0  # seconds without a commit on either side of a mark


@dataclass
class CommitLog:
    """Rows committed one per transaction; ``acked``: (id, when PostgreSQL acknowledged)."""

    conninfo: str
    acked: list[tuple[int, datetime]] = field(default_factory=list)
    marks: dict[str, datetime] = field(default_factory=dict)
    unarchived: list[str] = field(default_factory=list)  # segments the old primary never pushed

    def create(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")

    def commit(self, rows: int) -> None:
        """``rows`` commits through the write port, each logged once acknowledged."""
        first = self.acked[-1][0] + 1 if self.acked else 1
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for i in range(first, first + rows):
                conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", (i,))
                self.acked.append((i, datetime.now(UTC)))

    def mark(self, name: str) -> datetime:
        """A moment with no commit within ``QUIET`` seconds before or after it."""
        time.sleep(QUIET)
        self.marks[name] = datetime.now(UTC)
        time.sleep(QUIET)
        return self.marks[name]

    def acked_before(self, name: str) -> list[int]:
        return [i for i, at in self.acked if at < self.marks[name]]


def rows_of(conninfo: str) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")]


def replayed_everything(primary: str, replica: str) -> None:
    """Wait until ``replica`` has replayed all the WAL ``primary`` has written so far."""
    with psycopg.connect(primary, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None

    def caught_up() -> bool:
        with psycopg.connect(replica, autocommit=True) as conn:
            got = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", row).fetchone()
        return bool(got and got[0])

    wait_for(f"the replica replays up to {row[0]}", caught_up, 60)


def stop_archiver(pgdata: Path) -> int:
    """SIGSTOP the archiver of the postgres running in ``pgdata``: complete segments then
    wait in pg_wal as on a primary whose archiving lags when it dies. Returns its PID."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    for pid in process_tree({postmaster}):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"postgres: ") and b"archiver" in cmdline:
            os.kill(pid, signal.SIGSTOP)
            return pid
    raise AssertionError(f"no archiver process under postmaster {postmaster}")


def switch_segments(conninfo: str, count: int) -> list[str]:
    """Complete ``count`` segments (a commit in each, then a switch); their names."""
    names = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _ in range(count):
            conn.execute("SELECT txid_current()")  # a commit record: WAL to switch from
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            names.append(str(row[0]))
    return names


def archiver_of(conninfo: str) -> tuple[str, int]:
    """(the last WAL file archived, how many pushes failed) from pg_stat_archiver."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver"
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])
