"""A hot standby from the policy, with real processes (tests/standby/cluster.py): a
3-member etcd, two PostgreSQL 15 nodes under Patroni (ttl 20, loop_wait 2, retry_timeout
9), HAProxy from the generated configuration. The replica is restored from the
repository (`pg standby create` as Patroni's create_replica_method); `standby status`
names the primary and the streaming replica; a kill drill (SIGKILL of Patroni and
postgres: a dead host) moves the writes through HAProxy to the other node, the killed
node rejoins as a replica and WAL archiving continues from the new primary with no gap;
a switchover drill hands the writes back without losing a commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.schedule import JobId
from tests.sources.pg_fixtures import PgEnv
from tests.standby.cluster import SUPERUSER_PASSWORD, Cluster, run_standby_cluster
from tests.standby.commit_log import (
    CommitLog,
    archiver_of,
    replayed_everything,
    rows_of,
    stop_archiver,
    switch_segments,
)
from tests.standby.servers import wait_for


@pytest.fixture(scope="module")
def cluster(pg_env: PgEnv) -> Iterator[Cluster]:
    with run_standby_cluster(pg_env, 'ttl = "20s"\nloop_wait = "2s"\nretry_timeout = "9s"') as c:
        yield c


def test_the_replica_is_restored_from_the_repository(cluster: Cluster) -> None:
    log = cluster.nodes["pg2"].log.read_text()
    assert "replica has been created using safehold" in log, log[-3000:]
    with psycopg.connect(cluster.node_conninfo("pg2"), autocommit=True) as conn:
        conninfo = conn.execute("SHOW primary_conninfo").fetchone()
        restore = conn.execute("SHOW restore_command").fetchone()
    assert conninfo is not None and f"port={cluster.nodes['pg1'].port}" in conninfo[0]
    assert restore is not None and "pg wal-fetch %f %p" in restore[0]


def status(pg_env: PgEnv, cluster: Cluster, policy: Path | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = pg_env.json("standby", "status", "db", "-c", policy or cluster.policy)
    return doc


def drill(pg_env: PgEnv, cluster: Cluster, mode: str, policy: Path | None = None) -> dict[str, Any]:
    proc = pg_env.run(
        "--json", "standby", "failover-drill", "db", "-c", policy or cluster.policy,
        "--mode", mode,
        extra_env={"PGPASSWORD": SUPERUSER_PASSWORD}, timeout=400,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(proc.stdout)
    saved = json.loads(Path(report["report"]).read_text())
    assert saved["mode"] == mode and Path(report["report"]).parent == cluster.base / "state" / (
        "failover-drills"
    )
    return report


def test_status_names_the_primary_and_the_streaming_replica(
    cluster: Cluster, pg_env: PgEnv
) -> None:
    doc = status(pg_env, cluster)
    assert doc["primary"] == "pg1" and doc["timeline"] == 1 and doc["healthy"], doc
    [replica] = [n for n in doc["nodes"] if n["name"] == "pg2"]
    assert replica["role"] == "replica" and replica["streaming"] is True
    assert isinstance(replica["lag_bytes"], int) and replica["lag_seconds"] is not None
    text = pg_env.run("standby", "status", "db", "-c", cluster.policy).stdout.decode()
    assert "primary pg1, timeline 1" in text and "streaming, lag" in text and "healthy" in text


def archived_on(conninfo: str, timeline: str) -> None:
    """A segment switch on the primary at ``conninfo`` is archived, on ``timeline``."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None and row[0].startswith(timeline), row

        def archived() -> bool:
            last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return last is not None and last[0] is not None and last[0] >= row[0]

        wait_for(f"{row[0]} archived", archived, 60)


@pytest.fixture(scope="module")
def commits(cluster: Cluster) -> CommitLog:
    """Commits through HAProxy around the kill drill (tests/standby/commit_log.py)."""
    return CommitLog(cluster.write_conninfo())


def test_kill_drill_moves_writes_and_archiving_to_the_replica(
    cluster: Cluster, pg_env: PgEnv, commits: CommitLog
) -> None:
    pg1, pg2 = cluster.node_conninfo("pg1"), cluster.node_conninfo("pg2")
    commits.create()
    commits.commit(30)
    commits.mark("before the failover")
    commits.commit(30)
    replayed_everything(pg1, pg2)
    # pg1's archiving lags when it dies: two complete segments it never archives
    stop_archiver(cluster.nodes["pg1"].pgdata)
    commits.unarchived = switch_segments(pg1, 2)
    replayed_everything(pg1, pg2)
    report = drill(pg_env, cluster, "kill")
    print(f"kill drill: {report}")
    assert report["old_primary"] == "pg1" and report["new_primary"] == "pg2"
    assert 0 < report["write_downtime_seconds"] < 90
    assert report["commits_acknowledged"] > 20
    assert report["old_primary_rejoined"] is True, report["notes"]
    doc = status(pg_env, cluster)
    assert doc["primary"] == "pg2" and doc["timeline"] == 2 and doc["healthy"], doc
    commits.commit(30)
    commits.mark("after the failover")
    commits.commit(30)
    archived_on(cluster.node_conninfo("pg2"), "00000002")


def test_archive_is_continuous_across_the_failover(
    cluster: Cluster, pg_env: PgEnv, commits: CommitLog
) -> None:
    [pg] = pg_env.json("pg", "status")
    assert pg["gaps"] == [], pg["gaps"]
    assert pg["timelines"] == [1, 2] and pg["production_timeline"] == 2
    assert pg["lineage"] == [1, 2] and pg["lineage_recorded"] is True
    archived = {p.name for p in (pg_env.repo / "wal" / pg["system_id"]).iterdir()}
    # the segments pg1 completed but never archived: pg2 archived its own copies
    assert commits.unarchived and set(commits.unarchived) <= archived, sorted(archived)
    assert "00000002.history" in archived
    assert any(n.startswith("00000001") and n.endswith(".partial") for n in archived), archived
    assert pg["refused"] == [] and pg["archiving_stuck_on"] is None
    text = pg_env.run("pg", "status").stdout.decode()
    assert "timelines [1, 2]; production's lineage 1 -> 2" in text and "GAP" not in text
    # pg1, a replica again, archives what it receives (archive_mode always): segments pg2
    # has archived already, with the same bytes, accepted
    [switched] = switch_segments(cluster.node_conninfo("pg2"), 1)
    replica = cluster.node_conninfo("pg1")
    wait_for(f"pg1 archives {switched}", lambda: archiver_of(replica)[0] >= switched, 60)
    assert archiver_of(replica)[1] == 0  # no failed push


@pytest.mark.parametrize("mark", ["before the failover", "after the failover"])
def test_pitr_to_either_side_of_the_failover_is_exact(
    cluster: Cluster, pg_env: PgEnv, commits: CommitLog, mark: str
) -> None:
    moment = commits.marks[mark]
    # the restored copy runs with the backup's pg_hba.conf (Patroni's: local peer, host
    # with a password), so recovery is watched over TCP with the superuser's password
    restored, _ = pg_env.restore(
        mark.replace(" ", "-"), "--to-time", moment.isoformat(),
        "--start", "--connect-host", "127.0.0.1",
        start=False, extra_env={"PGPASSWORD": SUPERUSER_PASSWORD},
    )  # fmt: skip
    try:
        conninfo = f"host=127.0.0.1 port={restored.port} user=postgres dbname=postgres"
        rows = rows_of(f"{conninfo} password={SUPERUSER_PASSWORD}")
        assert rows == commits.acked_before(mark)
    finally:
        restored.stop()


def as_the_daemon(cluster: Cluster, pg_env: PgEnv, argv: list[str], env: dict[str, str]) -> Any:
    """Run safehold as the daemon runs a job (the policy in SAFEHOLD_CONFIG, the
    database password as a ~/.pgpass would give it); its last JSON line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "PG"))}
    clean |= env | {"SAFEHOLD_CONFIG": str(cluster.policy)}
    clean |= {"PGUSER": "postgres", "PGPASSWORD": SUPERUSER_PASSWORD}
    proc = subprocess.run(
        [sys.executable, "-m", "safehold", *argv], env=clean, capture_output=True, timeout=300
    )
    for path in (pg_env.repo, *pg_env.repo.rglob("*")):  # it ran as root
        shutil.chown(path, "postgres", "postgres")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().splitlines()[-1])


def test_the_scheduled_backup_follows_the_primary(cluster: Cluster, pg_env: PgEnv) -> None:
    """The daemon's full backup of the service's PostgreSQL source, with the daemon's
    command line and environment, backs up pg2 now that it is the primary, although the
    policy's pgdata names pg1."""
    policy = load_policy(str(cluster.policy))
    [command] = job_commands(policy, JobId("backup", "db/pg", "full"))
    summary = as_the_daemon(cluster, pg_env, command.argv, command.env)
    assert summary["source"]["pgdata"] == str(cluster.nodes["pg2"].pgdata), summary
    assert summary["source"]["timeline"] == 2


def test_a_cut_marks_the_primary(cluster: Cluster, pg_env: PgEnv) -> None:
    """`safehold cut` sets its restore point on pg2, the primary now (pg1, a replica,
    could not take one), although the policy's source names no node."""
    doc = as_the_daemon(cluster, pg_env, ["--json", "cut", "db"], {})
    mark = doc["sources"]["pg"]
    with psycopg.connect(cluster.node_conninfo("pg2"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_walfile_name(%s::pg_lsn), system_identifier::text FROM pg_control_system()",
            (mark["lsn"],),
        ).fetchone()
    assert row is not None and row[0].startswith("00000002"), (row, mark)
    assert row[1] == mark["system_id"]


def test_switchover_drill_hands_the_writes_back(cluster: Cluster, pg_env: PgEnv) -> None:
    report = drill(pg_env, cluster, "switchover")
    print(f"switchover drill: {report}")
    assert report["old_primary"] == "pg2" and report["new_primary"] == "pg1"
    assert report["commits_missing"] == []  # a planned switchover loses nothing
    assert report["old_primary_rejoined"] is True, report["notes"]
    archived_on(cluster.node_conninfo("pg1"), "00000003")
    [pg] = pg_env.json("pg", "status")
    assert pg["gaps"] == [] and pg["production_timeline"] == 3
