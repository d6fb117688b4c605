"""A missing or corrupt WAL segment: status shows the gap, recovery past it fails naming it,
and recovery to a point before it still works."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster


def _batch(cluster: PgCluster, n: int) -> tuple[object, str]:
    """Insert a batch, then a mark, switch segment, wait until archived; the batch's commit time.

    A time target is reached when recovery meets a later commit, so each batch is followed
    by a mark in the same segment: the batch's time is then reachable without the next one.
    """
    cluster.sql("INSERT INTO t SELECT %s FROM generate_series(1, 100)", n)
    at = cluster.sql("SELECT max(pg_xact_commit_timestamp(xmin)) FROM t")[0][0]
    cluster.sql("INSERT INTO marks VALUES (%s)", n)
    segment = cluster.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    cluster.wait_archived()
    return at, segment


def _wal_object(env: PgEnv, system_id: str, name: str) -> Path:
    return env.repo / "wal" / system_id / name


def test_missing_and_corrupt_segments(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("gaps")
    primary.sql("CREATE TABLE t (batch int); CREATE TABLE marks (batch int)")
    backup = pg_env.backup(primary, "full")
    system_id = backup["source"]["system_id"]
    times = []
    segments = []
    for n in range(1, 5):
        at, segment = _batch(primary, n)
        times.append(at)
        segments.append(segment)
    assert len(set(segments)) == 4
    # batch 2's segment goes missing
    lost = segments[1]
    _wal_object(pg_env, system_id, lost).rename(pg_env.base / "lost-segment")

    [status] = pg_env.json("pg", "status")
    assert status["system_id"] == system_id
    assert [g["first_missing"] for g in status["gaps"]] == [lost]
    assert len(status["windows"]) == 1  # only the part before the gap holds a base backup
    assert status["windows"][0]["last_segment"] < lost
    assert status["rpo_exposure_seconds"] is not None

    _, proc = pg_env.restore(
        "past_gap", "--to-time", times[3].isoformat(), "--no-archive", check=False
    )
    assert proc.returncode != 0
    assert lost in proc.stderr.decode(), proc.stderr.decode()

    _, proc = pg_env.restore("latest_gap", "--no-archive", start=False, check=False)
    assert proc.returncode != 0 and lost in proc.stderr.decode()

    before, proc = pg_env.restore("before_gap", "--to-time", times[0].isoformat(), "--no-archive")
    assert before.sql("SELECT DISTINCT batch FROM t ORDER BY 1") == [(1,)]
    before.stop()

    # put it back, damaged by one flipped byte: recovery cannot use it either
    damaged = bytearray((pg_env.base / "lost-segment").read_bytes())
    damaged[len(damaged) // 2] ^= 1
    path = _wal_object(pg_env, system_id, lost)
    path.write_bytes(bytes(damaged))
    os.chown(path, os.stat(path.parent).st_uid, os.stat(path.parent).st_gid)
    [status] = pg_env.json("pg", "status", "--verify")
    assert status["corrupt"] == [lost] and [g["first_missing"] for g in status["gaps"]] == [lost]
    _, proc = pg_env.restore(
        "past_corrupt", "--to-time", times[3].isoformat(), "--no-archive", check=False
    )
    assert proc.returncode != 0 and lost in proc.stderr.decode(), proc.stderr.decode()

    # repaired: everything is restorable again
    (pg_env.base / "lost-segment").replace(path)
    restored, proc = pg_env.restore("repaired", "--to-time", times[3].isoformat(), "--no-archive")
    assert restored.sql("SELECT DISTINCT batch FROM t ORDER BY 1") == [(1,), (2,), (3,), (4,)]
    assert json.loads(proc.stdout)["reached_time"] == times[3].isoformat()
    restored.stop()
