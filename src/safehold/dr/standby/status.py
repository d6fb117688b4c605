"""What a standby cluster looks like now, read from each node's Patroni REST API.

``GET /patroni`` on a node gives its role, state, timeline and WAL positions; the
primary's also lists the standbys connected to it (pg_stat_replication). Under
synchronous_mode the synchronous standby is the replica Patroni's ``/sync`` key names (a
replica's document then says ``sync_standby``), not the one PostgreSQL calls ``sync``:
Patroni sets synchronous_standby_names first and writes the key a loop later, and promotes
only the replica the key names. A replica's lag in bytes is the primary's WAL position minus what the
replica replayed; in seconds, the age of the last commit it replayed when it is behind
(0 when it has replayed everything). Nothing here decides anything: Patroni does. An
application pair's instances are read by app_status.py into ``StandbyStatus.app``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.dr.standby.app_status import AppStatus, app_status
from safehold.dr.standby.config import StandbySetup
from safehold.dr.standby.policy import StandbyNode
from safehold.errors import SafeholdError

__all__ = [
    "NoPrimary",
    "NodeStatus",
    "StandbyStatus",
    "current_primary",
    "node_url",
    "patroni_state",
    "standby_status",
]

REST_TIMEOUT = 3.0


class NoPrimary(SafeholdError):
    """the hot standby of {0} has no primary to back up now: {1}"""


@dataclass
class NodeStatus:
    name: str
    address: str
    reachable: bool
    role: str | None = None  # primary, replica, sync_standby (Patroni's words, leader -> primary)
    state: str | None = None  # running, starting, stopped, ...
    timeline: int | None = None
    streaming: bool | None = None  # replicas: receiving WAL from the primary
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    error: str | None = None


@dataclass
class StandbyStatus:
    service: str
    scope: str
    synchronous_mode: bool
    primary: str | None
    timeline: int | None
    sync_standby: str | None
    nodes: list[NodeStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    app: AppStatus | None = None  # the application pair (app_status.py)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}

    def document(self) -> dict[str, Any]:
        """``standby status --json``, which the dashboard's /api/v1/standbys also serves."""
        return {"message_type": "standby_status", **self.to_dict()}


def node_url(node: StandbyNode, path: str) -> str:
    return f"http://{node.host}:{node.rest_port}{path}"


def patroni_state(node: StandbyNode) -> dict[str, Any]:
    """The node's ``GET /patroni`` document (Patroni answers 503 with the same document
    on a node that is not running PostgreSQL)."""
    try:
        with urllib.request.urlopen(node_url(node, "/patroni"), timeout=REST_TIMEOUT) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}"))


def _read(node: StandbyNode) -> tuple[NodeStatus, dict[str, Any]]:
    address = f"{node.host}:{node.port}"
    try:
        doc = patroni_state(node)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return NodeStatus(node.name, address, False, error=str(reason)), {}
    role = doc.get("role")
    status = NodeStatus(
        node.name,
        address,
        True,
        role="primary" if role in ("master", "primary") else role,
        state=doc.get("state"),
        timeline=doc.get("timeline"),
    )
    return status, doc


def _seconds_behind(doc: dict[str, Any], now: datetime) -> float | None:
    stamp = (doc.get("xlog") or {}).get("replayed_timestamp")
    if not stamp:
        return None
    try:
        replayed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return max(0.0, round((now - replayed).total_seconds(), 3))


def standby_status(setup: StandbySetup) -> StandbyStatus:
    """Every node and instance read once; the problems an operator must hear about."""
    if setup.standby.nodes:
        result = _cluster_status(setup)
    else:
        result = StandbyStatus(setup.service, setup.scope, False, None, None, None)
    if setup.standby.app is not None:
        result.app = app_status(setup.standby.app)
        result.problems += result.app.problems()
    return result


def _cluster_status(setup: StandbySetup) -> StandbyStatus:
    """The Patroni cluster: every node read once."""
    now = datetime.now(UTC)
    read = [_read(node) for node in setup.standby.nodes]
    primaries = [(s, doc) for s, doc in read if s.role == "primary" and s.state == "running"]
    result = StandbyStatus(
        setup.service, setup.scope, setup.standby.synchronous_mode, None, None, None
    )
    if len(primaries) == 1:
        primary, doc = primaries[0]
        result.primary, result.timeline = primary.name, primary.timeline
        position = (doc.get("xlog") or {}).get("location")
        connected = {r.get("application_name"): r for r in doc.get("replication") or []}
        named = [s.name for s, d in read if s is not primary and d.get("sync_standby")]
        result.sync_standby = named[0] if named else None
        for status, node_doc in read:
            if status is primary or not status.reachable:
                continue
            replication = connected.get(status.name)
            status.streaming = bool(replication and replication.get("state") == "streaming")
            replayed = (node_doc.get("xlog") or {}).get("replayed_location")
            if isinstance(position, int) and isinstance(replayed, int):
                status.lag_bytes = max(0, position - replayed)
                status.lag_seconds = 0.0 if replayed >= position else _seconds_behind(node_doc, now)
    result.nodes = [s for s, _ in read]
    result.problems = _problems(result, len(primaries))
    return result


def _problems(status: StandbyStatus, primaries: int) -> list[str]:
    problems = []
    if primaries == 0:
        problems.append("no primary: writes through HAProxy fail")
    elif primaries > 1:
        problems.append(f"{primaries} nodes say they are primary")
    for node in status.nodes:
        if not node.reachable:
            problems.append(f"{node.name} does not answer ({node.error})")
        elif node.name != status.primary and node.streaming is False:
            problems.append(f"{node.name} is not streaming from the primary (state {node.state})")
    standbys = [n for n in status.nodes if n.name != status.primary and n.streaming]
    if status.primary is not None and not standbys:
        problems.append("no healthy standby: the primary runs alone")
    if status.synchronous_mode and status.primary is not None and status.sync_standby is None:
        problems.append("no synchronous standby: Patroni cannot fail over without losing commits")
    return problems


def current_primary(setup: StandbySetup) -> StandbyNode:
    """The node Patroni runs as primary now: where the service's base backups are taken,
    whichever node that is after a failover."""
    status = standby_status(setup)
    if status.primary is None:
        raise NoPrimary(setup.service, "; ".join(status.problems))
    return setup.node(status.primary)
