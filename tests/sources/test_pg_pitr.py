"""Point-in-time recovery is exact: restoring to a commit's time gives that commit and none after."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster

INTERVAL = 0.05


class Writer(threading.Thread):
    """Inserts one row every 50 ms, each in its own transaction."""

    def __init__(self, cluster: PgCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.halt = threading.Event()
        self.rows = 0

    def run(self) -> None:
        with self.cluster.connect() as conn:
            while not self.halt.is_set():
                conn.execute("INSERT INTO ticks DEFAULT VALUES")
                self.rows += 1
                time.sleep(INTERVAL)


def _committed(cluster: PgCluster) -> list[tuple[int, object]]:
    return [
        (row[0], row[1])
        for row in cluster.sql("SELECT id, pg_xact_commit_timestamp(xmin) FROM ticks ORDER BY id")
    ]


def test_restore_to_a_time_between_backups_is_exact(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("pitr")
    primary.sql(
        "CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
    )
    writer = Writer(primary)
    writer.start()
    try:
        time.sleep(0.5)
        full = pg_env.backup(primary, "full")
        time.sleep(1.5)
        middle = primary.sql("SELECT max(id) FROM ticks")[0][0]
        time.sleep(1.5)
        incr = pg_env.backup(primary, "incr")
        time.sleep(1.0)
    finally:
        writer.halt.set()
        writer.join()
    primary.wait_archived()
    rows = _committed(primary)
    assert len(rows) > 60
    target_id, target_time = next((i, t) for i, t in rows if i == middle)
    assert target_time < datetime.fromisoformat(incr["source"]["stop_time"])

    restored, proc = pg_env.restore("to_time", "--to-time", target_time.isoformat(), "--no-archive")
    result = json.loads(proc.stdout)
    # the newest backup that ended before the target: the full one, not the incremental
    assert result["snapshot_id"] == full["snapshot_id"]
    got = [r[0] for r in restored.sql("SELECT id FROM ticks ORDER BY id")]
    assert got == [i for i, t in rows if t <= target_time]
    assert got[-1] == target_id  # inclusive: the target commit itself, and nothing after it
    assert result["reached_time"] == target_time.isoformat()
    restored.stop()

    # after the incremental: the incremental is chosen, and the same exactness holds
    late_id, late_time = rows[-5]
    restored, proc = pg_env.restore(
        "to_time_late", "--to-time", late_time.isoformat(), "--no-archive"
    )
    assert json.loads(proc.stdout)["snapshot_id"] == incr["snapshot_id"]
    got = [r[0] for r in restored.sql("SELECT id FROM ticks ORDER BY id")]
    assert got == [i for i, t in rows if t <= late_time] and got[-1] == late_id
    restored.stop()


def test_restore_to_a_name_an_xid_and_an_lsn(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("targets")
    primary.sql("CREATE TABLE t (step text)")
    system_id = pg_env.backup(primary, "full")["source"]["system_id"]
    primary.sql("INSERT INTO t VALUES ('a')")
    primary.sql("SELECT pg_create_restore_point('before_b')")
    with primary.connect() as conn, conn.transaction():
        conn.execute("INSERT INTO t VALUES ('b')")
        row = conn.execute("SELECT txid_current()").fetchone()
        assert row is not None
        xid_b = row[0]
    lsn_after_b = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    primary.sql("INSERT INTO t VALUES ('c')")
    primary.wait_archived()

    for name, args, expected in (
        ("to_name", ["--to-name", "before_b"], ["a"]),
        ("to_xid", ["--to-xid", str(xid_b)], ["a", "b"]),
        ("to_lsn", ["--to-lsn", lsn_after_b], ["a", "b"]),
    ):
        restored, _ = pg_env.restore(name, *args, "--system-id", system_id, "--no-archive")
        assert [r[0] for r in restored.sql("SELECT step FROM t ORDER BY step")] == expected, name
        restored.stop()
