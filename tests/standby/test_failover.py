"""A hot standby from the policy, with real processes: a 3-member etcd, two PostgreSQL 15
nodes under Patroni (ttl 20, loop_wait 2, retry_timeout 9), HAProxy from the generated
configuration. The replica is restored from the repository (`pg standby create` as
Patroni's create_replica_method); a node kill (SIGKILL of Patroni and postgres: a dead
host) moves the writes through HAProxy to the other node; the killed node rejoins as a
replica; WAL archiving continues from the new primary with no gap."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
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


@dataclass
class Writer:
    """Commits through HAProxy's write port, one row per commit, and records each
    acknowledged one with the port of the node that took it."""

    conninfo: str
    acked: list[tuple[int, int, float]] = field(default_factory=list)  # id, port, when
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        next_id = 1
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                row = conn.execute(
                    "INSERT INTO t (id) VALUES (%s) RETURNING inet_server_port()", (next_id,)
                ).fetchone()
                assert row is not None
                self.acked.append((next_id, int(row[0]), time.monotonic()))
                next_id += 1
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.02)
        if conn is not None:
            conn.close()


def test_node_kill_moves_writes_and_archiving_to_the_replica(
    cluster: Cluster, pg_env: PgEnv
) -> None:
    pg1, pg2 = cluster.nodes["pg1"], cluster.nodes["pg2"]
    with psycopg.connect(cluster.write_conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    writer = Writer(cluster.write_conninfo())
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        wait_for("writes through HAProxy", lambda: len(writer.acked) > 20)
        assert {port for _, port, _ in writer.acked} == {pg1.port}
        killed = time.monotonic()
        pg1.kill_hard()
        on_pg2 = wait_for(
            "a write through HAProxy on pg2",
            lambda: [a for a in writer.acked if a[1] == pg2.port and a[2] > killed],
            timeout=90,
            log=pg2.log,
        )
        downtime = on_pg2[0][2] - killed
        assert cluster.primary() == "pg2"
        pg1.start(cluster.wrapper)
        wait_for("pg1 back as replica", lambda: pg1.role() == "replica", 90, pg1.log)
        wait_for("pg1 streaming", lambda: rest(pg1.rest_port, "/replica")[0] == 200, 60, pg1.log)
    finally:
        writer.stop.set()
        thread.join(10)
    print(f"writes through HAProxy again {downtime:.1f} s after the kill")
    acked_on_pg2 = {i for i, port, _ in writer.acked if port == pg2.port}
    with psycopg.connect(cluster.node_conninfo("pg2"), autocommit=True) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM t")}
        assert acked_on_pg2 <= present
        name = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert name is not None and name[0].startswith("00000002")

        def archived() -> bool:
            row = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return row is not None and row[0] is not None and row[0] >= name[0]

        wait_for("the new primary archives", archived, 60, pg2.log)
    [status] = pg_env.json("pg", "status")
    assert status["gaps"] == [], status["gaps"]
    assert status["timelines"] == [1, 2] and status["production_timeline"] == 2
