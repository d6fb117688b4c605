"""A hot standby from the policy, with real processes: a 3-member etcd, two PostgreSQL 15
nodes under Patroni (ttl 20, loop_wait 2, retry_timeout 9), HAProxy from the generated
configuration. The replica is restored from the repository (`pg standby create` as
Patroni's create_replica_method); a node kill (SIGKILL of Patroni and postgres: a dead
host) moves the writes through HAProxy to the other node; the killed node rejoins as a
replica; WAL archiving continues from the new primary with no gap."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.sources.pg_fixtures import PgEnv
from tests.standby.servers import (
    HAProxy,
    PatroniNode,
    patroni_wrapper,
    rest,
    run_etcd,
    wait_for,
    write_standby_policy,
)

SUPERUSER_PASSWORD = "super-pass"
PASSWORDS = {
    "PATRONI_SUPERUSER_PASSWORD": SUPERUSER_PASSWORD,
    "PATRONI_REPLICATION_PASSWORD": "rep-pass",
    "PATRONI_REWIND_PASSWORD": "rewind-pass",
}


@dataclass
class Cluster:
    base: Path
    policy: Path
    nodes: dict[str, PatroniNode]
    haproxy: HAProxy
    write_port: int
    wrapper: Path

    def primary(self) -> str | None:
        leaders = [n.name for n in self.nodes.values() if rest(n.rest_port, "/primary")[0] == 200]
        return leaders[0] if len(leaders) == 1 else None

    def write_conninfo(self) -> str:
        return (
            f"host=127.0.0.1 port={self.write_port} user=postgres dbname=postgres"
            f" password={SUPERUSER_PASSWORD} connect_timeout=1"
        )

    def node_conninfo(self, name: str) -> str:
        node = self.nodes[name]
        return (
            f"host=127.0.0.1 port={node.port} user=postgres dbname=postgres"
            f" password={SUPERUSER_PASSWORD} connect_timeout=2"
        )


@pytest.fixture(scope="module")
def cluster(pg_env: PgEnv) -> Iterator[Cluster]:
    """etcd, pg1 bootstrapped by Patroni and backed up, pg2 restored from that backup by
    Patroni's create_replica_method, HAProxy sending writes to pg1."""
    with ExitStack() as stack:
        (pg_env.base / "etcd").mkdir()
        etcd = stack.enter_context(run_etcd(pg_env.base / "etcd"))
        extra = f'socket_dir = "{pg_env.base}"\nsafehold_command = "{pg_env.wrapper}"\n'
        extra += 'ttl = "20s"\nloop_wait = "2s"\nretry_timeout = "9s"'
        written = write_standby_policy(
            pg_env.base / "safehold.toml",
            pg_env.base,
            pg_env.repo,
            pg_env.password_file,
            etcd.endpoints,
            extra,
            node_extra=f'start_command = "{pg_env.base}/start-{{name}}.sh"\n',
            tail=f'[daemon]\nstate_dir = "{pg_env.base}/state"\n',
        )
        policy, ports, write_port = written.path, written.ports, written.write_port
        out = pg_env.base / "standby"
        pg_env.run("standby", "config", "db", "-c", policy, "--out", out)
        wrapper = patroni_wrapper(pg_env.base / "patroni")
        env = {"PATH": "/usr/lib/postgresql/15/bin:/usr/bin:/bin", "HOME": str(pg_env.base)}
        nodes = {
            name: PatroniNode(
                name,
                out / f"patroni-{name}.yml",
                pg_env.base / name,
                port,
                rest_port,
                pg_env.base / f"patroni-{name}.log",
                env | PASSWORDS,
            )
            for name, (port, rest_port) in ports.items()
        }
        for name, node in nodes.items():  # how a drill starts a killed node again
            script = pg_env.base / f"start-{name}.sh"
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in node.env.items())
            script.write_text(
                f"#!/bin/sh\nexport {exports}\nexec setpriv --reuid=postgres --regid=postgres"
                f" --init-groups {wrapper} {node.config}\n"
            )
            script.chmod(0o755)
        haproxy = HAProxy(
            out / "haproxy.cfg", pg_env.base / "haproxy.log", socket=out / "haproxy.sock"
        )
        cluster = Cluster(pg_env.base, policy, nodes, haproxy, write_port, wrapper)
        # stopped in reverse: HAProxy, then the replicas, then the rest
        for node in nodes.values():
            stack.callback(node.stop)
        stack.callback(haproxy.stop)
        pg1, pg2 = nodes["pg1"], nodes["pg2"]
        pg1.start(wrapper)
        wait_for("pg1 primary", lambda: rest(pg1.rest_port, "/primary")[0] == 200, log=pg1.log)
        pg_env.run(
            "pg", "backup", "--type", "full", "--pgdata", pg1.pgdata,
            "--dsn", cluster.node_conninfo("pg1"),
        )  # fmt: skip
        for path in (pg_env.repo, *pg_env.repo.rglob("*")):  # the backup ran as root
            shutil.chown(path, "postgres", "postgres")
        pg2.start(wrapper)
        wait_for("pg2 replica", lambda: rest(pg2.rest_port, "/replica")[0] == 200, 90, pg2.log)
        haproxy.start()
        wait_for("HAProxy: pg1 alone up", lambda: haproxy.servers_up("db_write") == ["pg1"])
        yield cluster


def test_the_replica_is_restored_from_the_repository(cluster: Cluster) -> None:
    log = cluster.nodes["pg2"].log.read_text()
    assert "replica has been created using safehold" in log, log[-3000:]
    with psycopg.connect(cluster.node_conninfo("pg2"), autocommit=True) as conn:
        conninfo = conn.execute("SHOW primary_conninfo").fetchone()
        restore = conn.execute("SHOW restore_command").fetchone()
    assert conninfo is not None and f"port={cluster.nodes['pg1'].port}" in conninfo[0]
    assert restore is not None and "pg wal-fetch %f %p" in restore[0]


def status(pg_env: PgEnv, cluster: Cluster) -> dict[str, Any]:
    doc: dict[str, Any] = pg_env.json("standby", "status", "db", "-c", cluster.policy)
    return doc


def drill(pg_env: PgEnv, cluster: Cluster, mode: str) -> dict[str, Any]:
    proc = pg_env.run(
        "--json", "standby", "failover-drill", "db", "-c", cluster.policy, "--mode", mode,
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


def test_kill_drill_moves_writes_and_archiving_to_the_replica(
    cluster: Cluster, pg_env: PgEnv
) -> None:
    report = drill(pg_env, cluster, "kill")
    print(f"kill drill: {report}")
    assert report["old_primary"] == "pg1" and report["new_primary"] == "pg2"
    assert 0 < report["write_downtime_seconds"] < 90
    assert report["commits_acknowledged"] > 20
    assert report["old_primary_rejoined"] is True, report["notes"]
    doc = status(pg_env, cluster)
    assert doc["primary"] == "pg2" and doc["timeline"] == 2 and doc["healthy"], doc
    archived_on(cluster.node_conninfo("pg2"), "00000002")
    [pg] = pg_env.json("pg", "status")
    assert pg["gaps"] == [], pg["gaps"]
    assert pg["timelines"] == [1, 2] and pg["production_timeline"] == 2


def test_switchover_drill_hands_the_writes_back(cluster: Cluster, pg_env: PgEnv) -> None:
    report = drill(pg_env, cluster, "switchover")
    print(f"switchover drill: {report}")
    assert report["old_primary"] == "pg2" and report["new_primary"] == "pg1"
    assert report["commits_missing"] == []  # a planned switchover loses nothing
    assert report["old_primary_rejoined"] is True, report["notes"]
    archived_on(cluster.node_conninfo("pg1"), "00000003")
    [pg] = pg_env.json("pg", "status")
    assert pg["gaps"] == [] and pg["production_timeline"] == 3
