"""What ``standby status`` calls a problem, from node states as Patroni reports them."""

from __future__ import annotations

from safehold.dr.standby.status import NodeStatus, StandbyStatus, _problems


def status(
    *nodes: NodeStatus, sync: bool = False, sync_standby: str | None = None
) -> StandbyStatus:
    primary = next((n.name for n in nodes if n.role == "primary"), None)
    result = StandbyStatus("db", "db", sync, primary, 1, sync_standby, list(nodes))
    result.problems = _problems(result, sum(n.role == "primary" for n in nodes))
    return result


PRIMARY = NodeStatus("pg1", "10.0.0.1:5432", True, "primary", "running", 1)


def test_a_streaming_replica_is_healthy() -> None:
    replica = NodeStatus("pg2", "10.0.0.2:5432", True, "replica", "running", 1, True, 0, 0.0)
    assert status(PRIMARY, replica).healthy


def test_a_dead_replica_leaves_no_healthy_standby() -> None:
    dead = NodeStatus("pg2", "10.0.0.2:5432", False, error="Connection refused")
    assert status(PRIMARY, dead).problems == [
        "pg2 does not answer (Connection refused)",
        "no healthy standby: the primary runs alone",
    ]


def test_a_replica_that_does_not_stream_and_no_sync_standby() -> None:
    stuck = NodeStatus("pg2", "10.0.0.2:5432", True, "replica", "starting", 1, False)
    assert status(PRIMARY, stuck, sync=True).problems == [
        "pg2 is not streaming from the primary (state starting)",
        "no healthy standby: the primary runs alone",
        "no synchronous standby: Patroni cannot fail over without losing commits",
    ]


def test_no_primary() -> None:
    replica = NodeStatus("pg2", "10.0.0.2:5432", True, "replica", "running", 1)
    assert status(replica).problems[0] == "no primary: writes through HAProxy fail"
