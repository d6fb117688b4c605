"""MariaDB pieces that need no server: chain choice, binlog event times, gaps and windows."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest

from safehold.errors import SnapshotNotFound
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, format_time
from safehold.sources.mysql.binlog import (
    BinlogConflict,
    commit_times,
    last_commit_time,
    list_binlogs,
    push_binlog,
)
from safehold.sources.mysql.client import MysqlError
from safehold.sources.mysql.physical import choose_chain
from safehold.sources.mysql.pitr import binlogs_after
from safehold.sources.mysql.status import instance_status

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _backup(sid: str, kind: str, minute: int, lsn: tuple[int, int], base: str | None) -> Snapshot:
    return Snapshot(
        time=format_time(T0),
        tree="00" * 32,
        paths=["/x"],
        hostname="h",
        source={
            "kind": "mysql",
            "type": kind,
            "instance": "db1",
            "base": base,
            "from_lsn": lsn[0],
            "to_lsn": lsn[1],
            "stop_time": format_time(T0 + timedelta(minutes=minute)),
            "binlog_file": "mysql-bin.000001",
            "binlog_pos": 4,
        },
        id=sid * 8,
    )


FULL = _backup("a", "full", 0, (0, 100), None)
INCR1 = _backup("b", "incr", 10, (100, 200), "a" * 8)
INCR2 = _backup("c", "incr", 20, (200, 300), "b" * 8)


def test_chain_for_a_time_or_a_snapshot() -> None:
    backups = [FULL, INCR1, INCR2]
    assert choose_chain(backups) == [FULL, INCR1, INCR2]
    assert choose_chain(backups, to_time=T0 + timedelta(minutes=15)) == [FULL, INCR1]
    assert choose_chain(backups, ref="bbbb") == [FULL, INCR1]
    with pytest.raises(SnapshotNotFound):
        choose_chain(backups, to_time=T0 - timedelta(seconds=1))
    with pytest.raises(MysqlError, match="chain is broken"):
        choose_chain([INCR1, INCR2])
    bad = _backup("d", "incr", 30, (250, 400), "c" * 8)
    with pytest.raises(MysqlError, match="starts at LSN 250"):
        choose_chain([FULL, INCR1, INCR2, bad])


def _event(stamp: datetime, kind: int, body: bytes = b"x" * 10) -> bytes:
    size = 19 + len(body)
    return struct.pack("<IBIIIH", int(stamp.timestamp()), kind, 1, size, 0, 0) + body


def _binlog(*events: bytes) -> bytes:
    return b"\xfebin" + b"".join(events)


def test_commit_times_from_event_headers() -> None:
    data = _binlog(
        _event(T0, 15),  # format description
        _event(T0 + timedelta(seconds=1), 162),  # GTID (begin)
        _event(T0 + timedelta(seconds=1), 16),  # XID (commit)
        _event(T0 + timedelta(seconds=5), 2),  # a DDL query
    )
    times = [t for _, t in commit_times(data)]
    assert times == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=5)]
    assert last_commit_time(data) == T0 + timedelta(seconds=5)
    assert last_commit_time(data, before=T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=1)
    assert last_commit_time(data + b"\x00" * 7) == T0 + timedelta(seconds=5)  # torn tail


def test_gaps_runs_and_windows(memory_repo: Repository) -> None:
    for n, second in ((1, 30), (2, 90), (4, 300)):
        data = _binlog(_event(T0, 15), _event(T0 + timedelta(seconds=second), 16))
        push_binlog(memory_repo, "db1", f"mysql-bin.{n:06d}", data)
    assert (
        push_binlog(
            memory_repo,
            "db1",
            "mysql-bin.000001",
            _binlog(_event(T0, 15), _event(T0 + timedelta(seconds=30), 16)),
        )
        is False
    )
    with pytest.raises(BinlogConflict):
        push_binlog(memory_repo, "db1", "mysql-bin.000001", _binlog())
    assert list_binlogs(memory_repo.store, "db1") == [f"mysql-bin.00000{n}" for n in (1, 2, 4)]
    assert binlogs_after(memory_repo, "db1", "mysql-bin.000001") == (
        ["mysql-bin.000001", "mysql-bin.000002"],
        "mysql-bin.000003",
    )
    assert binlogs_after(memory_repo, "db1", "mysql-bin.000003") == ([], "mysql-bin.000003")
    memory_repo.save_snapshot(FULL)
    st = instance_status(memory_repo, "db1", now=T0 + timedelta(seconds=400))
    assert st.gaps == [{"after": "mysql-bin.000002", "before": "mysql-bin.000004", "files": 1}]
    assert st.windows == [
        {
            "from": format_time(T0),
            "to": format_time(T0 + timedelta(seconds=90)),
            "first_binlog": "mysql-bin.000001",
            "last_binlog": "mysql-bin.000002",
            "backups": [FULL.short_id],
        }
    ]
    assert st.rpo_exposure_seconds == 100.0
