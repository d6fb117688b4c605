"""``pg standby create``: a streaming standby restored from the repository catches up from
the archive while the primary keeps writing, then streams; it archives nothing."""

from __future__ import annotations

import json
import threading
import time

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster, free_port, runuser
from tests.standby.servers import wait_for


def test_standby_from_the_repository_catches_up_and_streams(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("standby_primary")
    primary.sql("CREATE TABLE t (n int)")
    pg_env.backup(primary, "full")
    primary.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    primary.wait_archived()  # WAL after the backup: the standby fetches it from the archive
    stop = threading.Event()

    def load() -> None:  # the primary keeps committing while the standby is built
        while not stop.is_set():
            primary.sql("INSERT INTO t VALUES (0)")
            time.sleep(0.01)

    writer = threading.Thread(target=load, daemon=True)
    writer.start()
    standby = PgCluster(pg_env.base / "standby_copy", free_port(), pg_env.base)
    pg_env.clusters.append(standby)
    try:
        proc = pg_env.run(
            "--json", "pg", "standby", "create", "--pgdata", standby.pgdata,
            "--primary-conninfo", primary.conninfo, "--port", str(standby.port),
            "--safehold-command", str(pg_env.wrapper),
        )  # fmt: skip
        summary = json.loads(proc.stdout)
        assert (standby.pgdata / "standby.signal").exists()
        assert not (standby.pgdata / "recovery.signal").exists()
        standby.start()
        wait_for(
            "the standby streams",
            lambda: primary.sql("SELECT state FROM pg_stat_replication") == [("streaming",)],
            log=standby.log,
        )
    finally:
        stop.set()
        writer.join(10)
    assert standby.sql("SELECT pg_is_in_recovery()") == [(True,)]
    log = standby.log.read_text()
    assert 'restored log file "0000000100000000000000' in log  # caught up from the archive
    expected = primary.sql("SELECT count(*) FROM t")
    wait_for("every row on the standby", lambda: standby.sql("SELECT count(*) FROM t") == expected)
    primary.wait_archived()
    assert standby.sql("SELECT archived_count FROM pg_stat_archiver") == [(0,)]
    assert (
        summary["system_id"]
        == runuser("/usr/lib/postgresql/15/bin/pg_controldata", primary.pgdata)
        .stdout.decode()
        .split("Database system identifier:")[1]
        .split()[0]
    )
    standby.stop()
