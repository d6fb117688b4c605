"""archive_command fails while the store is unreachable: PostgreSQL keeps the WAL and retries,
and once the store is back every segment is archived: nothing is lost."""

from __future__ import annotations

import json
import time

from tests.sources.pg_fixtures import PgEnv


def test_archive_failure_is_retried_and_nothing_lost(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("outage")
    primary.sql("CREATE TABLE t (n int)")
    backup = pg_env.backup(primary, "full")
    wal_dir = pg_env.repo / "wal" / backup["source"]["system_id"]
    wal_dir.chmod(0o500)  # the postgres user can no longer write: the store is "down"
    try:
        for _n in range(3):
            primary.sql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
            primary.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while primary.sql("SELECT failed_count FROM pg_stat_archiver")[0][0] < 2:
            assert time.monotonic() < deadline, "archive_command never failed"
            time.sleep(0.2)
        ready = list((primary.pgdata / "pg_wal" / "archive_status").glob("*.ready"))
        assert len(ready) >= 3  # PostgreSQL keeps them until archived
    finally:
        wal_dir.chmod(0o700)
    primary.wait_archived()
    assert not list((primary.pgdata / "pg_wal" / "archive_status").glob("*.ready"))

    [status] = pg_env.json("pg", "status")
    assert status["gaps"] == [] and len(status["windows"]) == 1
    restored, proc = pg_env.restore("after_outage", "--no-archive")
    assert json.loads(proc.stdout)["started"]
    assert restored.sql("SELECT count(*) FROM t") == [(3000,)]
    restored.stop()
