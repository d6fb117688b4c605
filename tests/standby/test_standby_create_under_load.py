"""A standby created from the repository while the primary is under pgbench load catches
up and streams (issue 17): ``pg standby create`` restores the base backup taken before
the load, the standby replays what the archive has, then streams, and its replay stays
close behind the primary while pgbench keeps committing; once the load stops it has
exactly the primary's data. (tests/sources/test_pg_standby.py covers the same with a
one-row-at-a-time writer; this is the same under a real mixed write load.)"""

from __future__ import annotations

import subprocess

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PG_BIN, PgCluster, free_port
from tests.standby.servers import wait_for

LAG_BYTES = 16 << 20  # "caught up": replay within one WAL segment of the primary's write
LOAD_SECONDS = 300  # pgbench's own limit; the test stops it as soon as it has its answer


def pgbench(primary: PgCluster, *args: str) -> list[str]:
    return [str(PG_BIN / "pgbench"), *primary.client_args(), *args, "postgres"]


def replication(primary: PgCluster) -> list[tuple[str, int]]:
    """(state, replay lag in bytes) of each walsender of the primary."""
    return [
        (state, int(lag))
        for state, lag in primary.sql(
            "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)"
            " FROM pg_stat_replication WHERE replay_lsn IS NOT NULL"
        )
    ]


def streaming_within(primary: PgCluster, lag_bytes: int) -> bool:
    """One standby streams and has replayed to within ``lag_bytes`` of the primary."""
    rows = replication(primary)
    return len(rows) == 1 and rows[0][0] == "streaming" and rows[0][1] <= lag_bytes


def test_a_standby_created_under_pgbench_load_catches_up_and_streams(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("pgbench_primary")
    subprocess.run(pgbench(primary, "-i", "-s", "2", "-q"), check=True, capture_output=True)
    pg_env.backup(primary, "full")
    # throttled, so that the standby can catch up on a machine shared with other tests
    load = subprocess.Popen(
        pgbench(primary, "-n", "-c", "2", "-R", "200", "-T", str(LOAD_SECONDS)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    standby = PgCluster(pg_env.base / "pgbench_standby", free_port(), pg_env.base)
    pg_env.clusters.append(standby)
    try:
        wait_for(
            "pgbench commits after the backup",
            lambda: primary.sql("SELECT count(*) FROM pgbench_history")[0][0] > 100,
            60,
        )
        primary.wait_archived()  # WAL of the load the standby must fetch from the archive
        pg_env.run(
            "pg", "standby", "create", "--pgdata", standby.pgdata,
            "--primary-conninfo", primary.conninfo, "--port", str(standby.port),
            "--safehold-command", str(pg_env.wrapper),
        )  # fmt: skip
        standby.start()
        wait_for(
            "the standby streams within one segment of the primary",
            lambda: streaming_within(primary, LAG_BYTES),
            120,
            standby.log,
        )
        assert load.poll() is None, "pgbench stopped before the standby caught up"
        log = standby.log.read_text()
        assert 'restored log file "0000000100000000000000' in log  # from the archive first
    finally:
        load.terminate()
        load.wait(30)
    history = primary.sql("SELECT count(*), sum(delta) FROM pgbench_history")
    wait_for("the standby replays the last commit", lambda: streaming_within(primary, 0), 60)
    assert standby.sql("SELECT count(*), sum(delta) FROM pgbench_history") == history
    assert standby.sql("SELECT sum(abalance) FROM pgbench_accounts") == primary.sql(
        "SELECT sum(abalance) FROM pgbench_accounts"
    )
    assert standby.sql("SELECT pg_is_in_recovery()") == [(True,)]
    standby.stop()
