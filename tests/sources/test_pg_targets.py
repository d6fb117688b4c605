"""Every time that `pg status` shows as restorable restores, to the microsecond.

PostgreSQL stops a time target at the first commit after it; the newest archived commit
has none after it, which made the recovery point that status shows unusable as a target.
Oracle: the commit times of the rows by ``pg_xact_commit_timestamp`` on the primary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest

from safehold.repo.repository import Repository
from safehold.sources.postgres.catalog import RecoveryTarget
from safehold.sources.postgres.recovery_plan import RestoreShort, check_reached, plan_recovery
from safehold.storage import LocalStore
from tests.conftest import PASSWORD
from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster, free_port


def _commit(cluster: PgCluster, rows: int) -> list[tuple[int, object]]:
    for _ in range(rows):
        cluster.sql("INSERT INTO t DEFAULT VALUES")
        time.sleep(0.005)
    cluster.wait_archived()
    return [
        (r[0], r[1])
        for r in cluster.sql("SELECT id, pg_xact_commit_timestamp(xmin) FROM t ORDER BY id")
    ]


def test_the_newest_recovery_point_shown_restores_exactly(pg_env: PgEnv) -> None:
    # no autovacuum: its ANALYZE commits would be newer than the rows, the oracle
    primary = pg_env.cluster("targets_end", autovacuum="off")
    primary.sql("CREATE TABLE t (id serial PRIMARY KEY)")
    pg_env.backup(primary, "full")
    for round_, exclusive in enumerate((False, True, False)):
        rows = _commit(primary, 40)
        newest = max(at for _, at in rows)
        [status] = pg_env.json("pg", "status")
        shown = status["windows"][-1]["to"]
        assert shown == status["newest_wal_time"]
        assert datetime.fromisoformat(shown) == newest  # to the microsecond
        args = ["--to-time", shown, *(["--exclusive"] if exclusive else [])]
        restored, proc = pg_env.restore(f"targets_end_{round_}", *args)
        got = [r[0] for r in restored.sql("SELECT id FROM t ORDER BY id")]
        if exclusive:  # stops before the commit at the target: PostgreSQL's own stop
            assert got == [i for i, at in rows if at < newest]
        else:
            assert got == [i for i, _ in rows]
            result = json.loads(proc.stdout)
            assert datetime.fromisoformat(result["reached_time"]) == newest and result["note"]
        restored.stop()

    # a recovery that ended before the target (here: claimed to have replayed nothing
    # after the backup) fails loudly, naming the first commit it missed
    repo = Repository.open(LocalStore(pg_env.repo), PASSWORD)
    plan = plan_recovery(repo, RecoveryTarget(time=shown), system_id=status["system_id"])
    start = plan.snapshot.source["stop_lsn"]
    with pytest.raises(RestoreShort, match="stopped short of the target") as short:
        check_reached(repo, plan, None, start)
    assert rows[0][1].isoformat() in str(short.value)  # the first row missed is named
    check_reached(repo, plan, shown, result["reached_lsn"])  # what the restore reached: exact
    primary.stop()


def test_what_was_reached_in_words_and_the_restore_commands_own_failure(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("targets_words", autovacuum="off")
    primary.sql("CREATE TABLE t (id serial PRIMARY KEY)")
    system_id = pg_env.backup(primary, "full")["source"]["system_id"]
    primary.wait_archived()
    common = ["--system-id", system_id, "--safehold-command", str(pg_env.wrapper), "--start"]
    common += ["--connect-host", str(pg_env.base)]

    # no transaction committed after the backup: said in words, not "reached None"; and
    # the window's start that status shows (the backup's end) restores, though no commit
    # follows it for PostgreSQL's time target to stop at
    [status] = [c for c in pg_env.json("pg", "status") if c["system_id"] == system_id]
    quiet = PgCluster(pg_env.base / "targets_words_copy", free_port(), pg_env.base)
    pg_env.clusters.append(quiet)
    proc = pg_env.run(
        "pg",
        "restore",
        "--target-dir",
        quiet.pgdata,
        "--port",
        str(quiet.port),
        "--to-time",
        status["windows"][0]["from"],
        *common,
    )
    text = proc.stdout.decode()
    assert "no transaction committed after the backup was replayed" in text, text
    assert "recovering to the end of the base backup" in text
    assert quiet.sql("SELECT count(*) FROM t") == [(0,)]
    assert "None" not in text and "does not archive" in text
    quiet.stop()

    # the postgres user cannot read the password file: that line, not only the FATAL after it
    secret = pg_env.base / "root-only-password"
    secret.write_bytes(pg_env.password_file.read_bytes())
    secret.chmod(0o600)  # owned by root
    denied = PgCluster(pg_env.base / "targets_words_denied", free_port(), pg_env.base)
    pg_env.clusters.append(denied)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "safehold",
            "--repo",
            str(pg_env.repo),
            "--password-file",
            str(secret),
            "pg",
            "restore",
            "--target-dir",
            str(denied.pgdata),
            "--port",
            str(denied.port),
            "--timeout",
            "120",
            *common,
        ],
        capture_output=True,
        env=env,
        timeout=300,
    )
    error = proc.stderr.decode()
    assert proc.returncode != 0
    assert f"cannot read password file {secret}: Permission denied" in error, error
    primary.stop()
