"""--method basebackup: pg_basebackup's tar stream into the repository, restored and recovered."""

from __future__ import annotations

import json

from tests.sources.pg_fixtures import PgEnv


def test_basebackup_method_round_trip(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("remote")
    primary.sql("CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 20000) g")
    first = pg_env.json("pg", "backup", "--method", "basebackup", "--dsn", primary.conninfo)
    src = first["source"]
    assert src["method"] == "basebackup" and src["start_lsn"] <= src["stop_lsn"]
    primary.sql("INSERT INTO t SELECT g FROM generate_series(20001, 20100) g")
    second = pg_env.json("pg", "backup", "--method", "basebackup", "--dsn", primary.conninfo)
    assert second["data_added"] < first["data_added"] / 2  # the tar deduplicates
    primary.wait_archived()

    restored, proc = pg_env.restore("from_tar", first["snapshot_id"], "--no-archive")
    assert json.loads(proc.stdout)["started"]
    assert restored.sql("SELECT count(*), max(n) FROM t") == [(20100, 20100)]
    restored.stop()
