"""A restored side copy never diverts later restores or status from production's history.

Oracle: each row's commit time from ``pg_xact_commit_timestamp`` on production itself.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster, runuser


def _commit_times(cluster: PgCluster) -> list[tuple[int, object]]:
    return [
        (r[0], r[1])
        for r in cluster.sql("SELECT id, pg_xact_commit_timestamp(xmin) FROM t ORDER BY id")
    ]


def _insert(cluster: PgCluster, rows: int, origin: str) -> None:
    for _ in range(rows):
        cluster.sql("INSERT INTO t (origin) VALUES (%s)", origin)
        time.sleep(0.01)


def test_a_side_copy_does_not_archive_and_its_timeline_is_never_followed(pg_env: PgEnv) -> None:
    prod = pg_env.cluster("lineage_prod", autovacuum="off")  # only the rows commit
    prod.sql("CREATE TABLE t (id serial PRIMARY KEY, origin text)")
    backup = pg_env.backup(prod, "full")
    system_id = backup["source"]["system_id"]
    _insert(prod, 20, "prod")
    prod.wait_archived()
    wal_dir = pg_env.repo / "wal" / system_id
    before = {p.name for p in wal_dir.iterdir()}

    # a copy restored the way the README shows, with defaults: it must not archive
    copy, proc = pg_env.restore("lineage_copy", "--to-latest")
    summary = json.loads(proc.stdout)
    assert summary["archiving"] == "off" and summary["timeline"] == 2
    assert copy.sql("SHOW archive_mode") == [("off",)]
    _insert(copy, 5, "copy")
    copy.sql("SELECT pg_switch_wal()")
    time.sleep(2)
    assert {p.name for p in wal_dir.iterdir()} == before  # nothing of the copy's timeline

    # a copy that archives anyway (an operator's hand, or an older safehold): its timeline
    # 2 reaches the repository, as it did in the issue
    command = pg_env.archive_command.replace("'", "''")
    copy.sql("ALTER SYSTEM SET archive_mode = 'on'")
    copy.sql(f"ALTER SYSTEM SET archive_command = '{command}'")
    copy.stop()
    copy.start()
    runuser(
        pg_env.wrapper,
        *pg_env.safehold_args,
        "pg",
        "wal-push",
        "pg_wal/00000002.history",
        "--pgdata",
        copy.pgdata,
    )
    _insert(copy, 5, "copy")
    copy.wait_archived()
    assert "00000002.history" in {p.name for p in wal_dir.iterdir()}

    # production goes on; T is a production commit after the copy's rows
    _insert(prod, 30, "prod")
    rows = _commit_times(prod)
    target_id, target_time = rows[-10]
    _insert(prod, 5, "prod")
    prod.wait_archived()
    rows = _commit_times(prod)

    restored, proc = pg_env.restore("lineage_restored", "--to-time", target_time.isoformat())
    result = json.loads(proc.stdout)
    assert result["lineage"] == [1] and result["recovery_target_timeline"] == "1"
    got = restored.sql("SELECT id, origin FROM t ORDER BY id")
    assert [i for i, _ in got] == [i for i, at in rows if at <= target_time]
    assert {o for _, o in got} == {"prod"} and got[-1][0] == target_id
    assert result["reached_time"] == target_time.isoformat()
    restored.stop()

    # the copy's branch only on purpose, and with a warning (it lacks the copy's first
    # segment, written before archiving was switched on: recovery makes what it can of it)
    branch, proc = pg_env.restore(
        "lineage_branch", "--to-time", target_time.isoformat(), "--timeline", "latest"
    )
    result = json.loads(proc.stdout)
    assert result["lineage"] == [1, 2] and "WARNING" in result["note"]
    branch.stop()

    [status] = pg_env.json("pg", "status")
    assert status["production_timeline"] == 1 and status["other_timelines"] == [2]
    assert "timeline 2 is archived but not recorded as production's" in status["warnings"][0]
    assert datetime.fromisoformat(status["newest_wal_time"]) == max(at for _, at in rows)
    assert status["windows"][-1]["to"] == status["newest_wal_time"]
    copy.stop()
    prod.stop()
