"""A standby cluster from the policy, with real processes, for tests/standby and bench/:
a 3-member etcd, two PostgreSQL 15 nodes under Patroni, HAProxy from the generated file."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

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


@contextmanager
def run_standby_cluster(pg_env: PgEnv, timings: str) -> Iterator[Cluster]:
    """etcd, pg1 bootstrapped by Patroni and backed up, pg2 restored from that backup by
    Patroni's create_replica_method, HAProxy sending writes to pg1. ``timings``: Patroni's
    keys of the standby table (ttl, loop_wait, retry_timeout)."""
    with ExitStack() as stack:
        (pg_env.base / "etcd").mkdir()
        etcd = stack.enter_context(run_etcd(pg_env.base / "etcd"))
        extra = f'socket_dir = "{pg_env.base}"\nsafehold_command = "{pg_env.wrapper}"\n'
        extra += timings
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
