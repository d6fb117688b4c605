"""Fixtures of the standby tests: the PostgreSQL repository and wrapper of the pg tests,
and one synchronous_mode cluster shared by the modules that need it."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from safehold.dr.standby.policy import StandbyNode
from tests.sources.pg_fixtures import (
    PgEnv,
    pg_env,  # noqa: F401  (repository + safehold wrapper)
    pg_environment,
)
from tests.standby.cluster import Cluster, run_standby_cluster
from tests.standby.servers import wait_for

SYNC_TABLE = 'ttl = "20s"\nloop_wait = "2s"\nretry_timeout = "9s"\nsynchronous_mode = true\n'


@dataclass
class SyncStandby:
    """A running synchronous_mode cluster (pg1, pg2) and the environment that made it."""

    env: PgEnv
    cluster: Cluster

    def status(self) -> dict[str, object]:
        doc: dict[str, object] = self.env.json("standby", "status", "db", "-c", self.cluster.policy)
        return doc

    def settled(self) -> tuple[str, str]:
        """(primary, replica) once one node is primary and Patroni's /sync key names the
        other: the state every test here starts from and leaves behind."""
        doc = wait_for(
            "a primary with a synchronous standby",
            lambda: (d := self.status())["healthy"] and d["sync_standby"] and d,
            120,
        )
        return str(doc["primary"]), str(doc["sync_standby"])

    def node(self, name: str) -> StandbyNode:
        """The policy's view of a node, as the drill's helpers take it."""
        n = self.cluster.nodes[name]
        return StandbyNode(
            name=name, host="127.0.0.1", pgdata=str(n.pgdata), port=n.port, rest_port=n.rest_port
        )


@pytest.fixture(scope="package")
def sync_standby() -> Iterator[SyncStandby]:
    with pg_environment() as env, run_standby_cluster(env, SYNC_TABLE) as cluster:
        yield SyncStandby(env, cluster)
