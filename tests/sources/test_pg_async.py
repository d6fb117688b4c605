"""Asynchronous archiving: the wal-pusher uploads what becomes ready, the light
archive_command waits for its mark; a failing store is retried and nothing is lost."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from safehold.sources.postgres.spool import HEARTBEAT
from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PG_BIN, runuser, write_safehold_wrapper


@pytest.fixture
def spool(pg_env: PgEnv) -> Iterator[str]:
    path = pg_env.base / "spool"
    path.mkdir()
    subprocess.run(["chown", "postgres:postgres", str(path)], check=True)
    yield str(path)


def test_async_archiving_keeps_every_segment(pg_env: PgEnv, spool: str) -> None:
    waiter = write_safehold_wrapper(pg_env.base / "spool-wait", "safehold.sources.postgres.spool")
    primary = pg_env.cluster("async", archive_command=f"{waiter} {spool} %p")
    pusher = subprocess.Popen(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(pg_env.wrapper),
            *pg_env.safehold_args,
            "--quiet",
            "pg",
            "wal-pusher",
            "--spool",
            spool,
            "--pgdata",
            str(primary.pgdata),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        backup = pg_env.backup(primary, "full")  # pg_backup_stop waits for the pusher too
        primary.sql(
            "CREATE TABLE t AS SELECT g AS n, repeat('x', 200) AS pad FROM generate_series(1, 200000) g"
        )
        primary.wait_archived()
        last = primary.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        [status] = pg_env.json("pg", "status")
        assert status["gaps"] == [] and status["wal_last"] == last
        assert int(last[8:], 16) - int(status["wal_first"][8:], 16) >= 4  # several segments

        wal_dir = pg_env.repo / "wal" / backup["source"]["system_id"]
        wal_dir.chmod(0o500)  # the store fails: the pusher leaves .error marks
        try:
            primary.sql("INSERT INTO t SELECT g, 'y' FROM generate_series(1, 1000) g")
            primary.sql("SELECT pg_switch_wal()")
            deadline = time.monotonic() + 30
            while not list(pg_env.base.joinpath("spool").glob("*.error")):
                assert time.monotonic() < deadline, "no .error mark"
                time.sleep(0.1)
        finally:
            wal_dir.chmod(0o700)
        primary.wait_archived()
        time.sleep(0.3)
        marks = [p.name for p in pg_env.base.joinpath("spool").iterdir()]
        assert HEARTBEAT in marks  # the pusher's, rewritten every second
        assert [m for m in marks if not m.startswith(HEARTBEAT)] == []  # every mark taken
    finally:
        pusher.terminate()
        pusher.wait(timeout=30)
    restored, _ = pg_env.restore("async_restored", "--no-archive")
    assert restored.sql("SELECT count(*) FROM t") == [(201000,)]
    restored.stop()


def test_fast_shutdown_does_not_wait_for_a_pusher_that_is_down(pg_env: PgEnv) -> None:
    """Each archive_command used to wait 60 s for the missing pusher, three tries per file
    before the shutdown could finish; now it fails at once and the shutdown goes on."""
    spool = pg_env.base / "spool-down"
    spool.mkdir()
    subprocess.run(["chown", "postgres:postgres", str(spool)], check=True)
    command = f"{pg_env.wrapper} {' '.join(pg_env.safehold_args)} pg wal-push --spool {spool} %p"
    primary = pg_env.cluster("async_down", archive_command=command)
    primary.sql("CREATE TABLE t AS SELECT 1 AS x")
    primary.sql("SELECT pg_switch_wal()")
    started = time.monotonic()
    proc = runuser(PG_BIN / "pg_ctl", "-D", primary.pgdata, "-m", "fast", "-w", "-t", "150", "stop")
    assert proc.returncode == 0 and time.monotonic() - started < 100
    log = primary.log.read_text()
    assert f"no `safehold pg wal-pusher --spool {spool}` is running" in log
