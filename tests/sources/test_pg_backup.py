"""Full and incremental base backups taken while pgbench writes restore to consistent clusters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PG_BIN, PgCluster

SCALE = 5


def _pgbench(cluster: PgCluster, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PG_BIN / "pgbench"), *cluster.client_args(), *args, "postgres"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _balances(cluster: PgCluster) -> tuple[int, ...]:
    """pgbench's invariant: every transaction adds the same delta to all four."""
    return cluster.sql(
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM "
        "pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), "
        "(SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)"
    )[0]


def _amcheck(cluster: PgCluster) -> None:
    cluster.sql("CREATE EXTENSION IF NOT EXISTS amcheck")
    proc = subprocess.run(
        [str(PG_BIN / "pg_amcheck"), *cluster.client_args(), "--heapallindexed", "postgres"],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_full_and_incremental_under_pgbench_restore_consistent(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("bench")
    subprocess.run(
        [str(PG_BIN / "pgbench"), *primary.client_args(), "-i", "-q", "-s", str(SCALE), "postgres"],
        check=True,
        capture_output=True,
    )
    bench = _pgbench(primary, "-c", "2", "-T", "120")
    try:
        full = pg_env.backup(primary, "full")
        time.sleep(1)
        incr = pg_env.backup(primary, "incr")
        time.sleep(1)
    finally:
        bench.terminate()  # transactions are atomic: the invariant holds wherever it stops
        bench.wait()
    assert full["source"]["type"] == "full" and incr["source"]["type"] == "incr"
    assert incr["files_unmodified"] > 0, incr  # unchanged files were not read again
    assert full["files_unmodified"] == 0 or full["files_new"] > 0
    primary.wait_archived()
    expected = _balances(primary)
    assert expected[4] > 0

    for name, summary in (("r_full", full), ("r_incr", incr)):
        restored, proc = pg_env.restore(name, summary["snapshot_id"], "--no-archive")
        result = json.loads(proc.stdout)
        assert result["started"] and result["reached_time"]
        a, b, t, h, _ = _balances(restored)
        assert a == b == t == h  # a consistent cluster
        assert _balances(restored) == expected  # and it replayed every archived transaction
        _amcheck(restored)
        restored.stop()


def test_tablespaces_are_backed_up_and_relinked(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("ts")
    location = pg_env.base / "ts_space"
    location.mkdir(mode=0o700)
    shutil.chown(location, "postgres", "postgres")
    primary.sql(f"CREATE TABLESPACE space LOCATION '{location}'")
    primary.sql(
        "CREATE TABLE far TABLESPACE space AS SELECT g AS n FROM generate_series(1, 10000) g"
    )
    oid = str(primary.sql("SELECT oid FROM pg_tablespace WHERE spcname = 'space'")[0][0])
    summary = pg_env.backup(primary, "full")
    assert summary["source"]["tablespaces"] == {oid: str(location)}
    primary.sql("INSERT INTO far SELECT g FROM generate_series(10001, 12000) g")
    primary.wait_archived()

    system_id = summary["source"]["system_id"]
    restored, _ = pg_env.restore("ts_restored", "--no-archive", "--system-id", system_id)
    moved = Path(f"{restored.pgdata}.tablespaces/{oid}")
    assert os.readlink(restored.pgdata / "pg_tblspc" / oid) == str(moved)
    assert restored.sql("SELECT count(*), max(n) FROM far") == [(12000, 12000)]
    assert restored.sql(
        "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'space'"
    ) == [(str(moved),)]
    restored.stop()
