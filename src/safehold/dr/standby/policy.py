"""The ``[services.NAME.standby]`` table: a hot standby of the service's PostgreSQL source.

Patroni elects the primary (its state in etcd) and HAProxy sends clients to it; this
table says where each node runs and how fast a failure is acted on, and
``safehold standby config`` turns it into each node's Patroni YAML and the HAProxy
configuration. The models validate one table; ``standby_problems`` checks what needs the
whole service or several keys at once (the source it names, a node listed twice, two
servers on one port, Patroni's timing rule), so that ``dr/load.py`` reports those with
the file and line of the key like every other policy problem. docs/standby.md
describes every key.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from safehold.dr.fields import (
    AbsolutePath,
    Name,
    PolicyModel,
    PositiveInterval,
    Text,
    describe,
    fail,
    parse_interval,
)
from safehold.dr.standby.addresses import WILDCARD_HOSTS, HostPort, Port, listed_twice
from safehold.dr.standby.app_policy import AppPair, app_doc, app_lines, app_problems

__all__ = [
    "PATRONI_MIN_LOOP_WAIT",
    "PATRONI_MIN_RETRY_TIMEOUT",
    "PATRONI_MIN_TTL",
    "Standby",
    "StandbyNode",
    "standby_problems",
]

# Patroni raises smaller values to these and keeps running (patroni/config.py
# _validate_and_adjust_timeouts): a policy that asks for less would not get what it says.
PATRONI_MIN_TTL = 20
PATRONI_MIN_LOOP_WAIT = 1
PATRONI_MIN_RETRY_TIMEOUT = 3
_MILLISECONDS = re.compile(r"(\d+)ms")


def _check_interval(value: Any) -> timedelta:
    """HAProxy's timings: a duration such as ``1s``, or milliseconds such as ``200ms``."""
    if not isinstance(value, str):
        raise fail(
            "duration", f"expected a duration such as '1s' or '200ms', got {describe(value)}"
        )
    millis = _MILLISECONDS.fullmatch(value.strip())
    interval = timedelta(milliseconds=int(millis[1])) if millis else parse_interval(value)
    if interval <= timedelta(0):
        raise fail("duration", "must be longer than zero")
    return interval


CheckInterval = Annotated[timedelta, BeforeValidator(_check_interval)]


class StandbyNode(PolicyModel):
    """One PostgreSQL server under Patroni: where it listens and keeps its data."""

    name: Name
    host: Text  # the address the other nodes, HAProxy and clients reach it at
    pgdata: AbsolutePath
    port: Port = 5432
    rest_port: Port = 8008  # Patroni's REST API: HAProxy's health checks ask it
    listen: Text | None = None  # the address PostgreSQL and Patroni bind (default: host)
    # how a failover drill starts this node's Patroni again after killing it; unset: its
    # service manager restarts it (systemd Restart=always)
    start_command: Text | None = None

    @property
    def bind(self) -> str:
        return self.listen or self.host


class Standby(PolicyModel):
    """A Patroni cluster of the service's PostgreSQL source, behind HAProxy."""

    source: Name | None = None  # the postgres source (default: the service's only one)
    scope: Name | None = None  # Patroni's cluster name (default: the service's name)
    namespace: Text = "/service/"
    # etcd, nodes and write_port: required for PostgreSQL (standby_problems says so), not
    # for a service whose standby is only an application pair (app)
    etcd: list[HostPort] = Field(default_factory=list)
    nodes: list[StandbyNode] = Field(default_factory=list)
    listen: Text = "127.0.0.1"  # HAProxy's address for the two ports below
    write_port: Port | None = None
    read_port: Port | None = None  # reads spread over the streaming replicas
    synchronous_mode: bool = False
    # Patroni's watchdog.mode: with /dev/watchdog writable by Patroni, a primary whose
    # Patroni stops (frozen, hung) resets its host before its leader key can expire
    watchdog: Literal["off", "automatic", "required"] = "automatic"
    ttl: PositiveInterval = timedelta(seconds=PATRONI_MIN_TTL)
    loop_wait: PositiveInterval = timedelta(seconds=2)
    retry_timeout: PositiveInterval = timedelta(seconds=9)
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = 1 << 20
    check_interval: CheckInterval = timedelta(seconds=1)  # HAProxy's inter
    # HAProxy's downinter: a node that becomes primary takes the writes this soon after
    # Patroni says so (bench/RESULTS.md "Hot standby failover")
    check_down_interval: CheckInterval = timedelta(milliseconds=200)
    check_fall: Annotated[int, Field(ge=1)] = 2
    check_rise: Annotated[int, Field(ge=1)] = 1
    check_timeout: CheckInterval = timedelta(seconds=1)
    connect_timeout: CheckInterval = timedelta(seconds=2)
    haproxy_socket: AbsolutePath | None = None  # runtime API (default: beside its config)
    pg_bin: AbsolutePath = "/usr/lib/postgresql/15/bin"
    socket_dir: AbsolutePath | None = None  # unix_socket_directories of every node
    safehold_command: Text = "safehold"  # how the postgres user runs safehold
    replicas_from_backup: bool = True  # new replicas restored from the repository
    archive: bool = True  # the primary archives its WAL into the service's repository
    superuser: Text = "postgres"
    replication_user: Text = "replicator"
    rewind_user: Text = "rewind_user"
    app: AppPair | None = None  # an active and a passive application instance (app_policy.py)

    @field_validator("nodes")
    @classmethod
    def _two_nodes_at_least(cls, value: list[StandbyNode]) -> list[StandbyNode]:
        if len(value) == 1:
            raise fail("nodes", f"a standby needs at least 2 nodes, got {len(value)}")
        return value


def standby_problems(service: str, document: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Problems of a service's standby table that one key alone cannot show, as (key path,
    message): the source, nodes listed twice, ports in use twice, Patroni's timing rule."""
    standby = document.get("standby")
    if not isinstance(standby, dict):
        return []
    base: tuple[Any, ...] = ("services", service, "standby")
    nodes = [n for n in standby.get("nodes") or [] if isinstance(n, dict)]
    app = standby.get("app")
    problems: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(app, dict):
        problems += app_problems((*base, "app"), app, _bound_ports(base, standby, nodes))
    if "nodes" not in standby and app is not None:
        return problems  # an application pair alone: no PostgreSQL
    problems += _source_problems(base, standby, document.get("sources"))
    problems += [
        ((*base, k), "missing required key")
        for k in ("etcd", "write_port", "nodes")
        if k not in standby
    ]
    if standby.get("etcd") == []:
        problems.append(((*base, "etcd"), "must not be empty"))
    problems += _duplicate_nodes(base, nodes)
    problems += _port_clashes(base, standby, nodes)
    problems += _timing_problems(base, standby)
    return problems


def _source_problems(
    base: tuple[Any, ...], standby: dict[str, Any], sources: Any
) -> list[tuple[tuple[Any, ...], str]]:
    kinds = {
        s.get("name"): s.get("kind")
        for s in (sources if isinstance(sources, list) else [])
        if isinstance(s, dict)
    }
    postgres = [str(name) for name, kind in kinds.items() if kind == "postgres"]
    named = standby.get("source")
    if named is None:
        if len(postgres) == 1:
            return []
        found = f"it has {', '.join(postgres)}" if postgres else "it has none"
        return [((*base,), f"a standby needs one postgres source named by source ({found})")]
    if named not in kinds:
        known = ", ".join(str(n) for n in kinds) or "none"
        return [((*base, "source"), f"unknown source {named!r} ({known})")]
    if kinds[named] != "postgres":
        return [((*base, "source"), f"a standby needs a postgres source, not {kinds[named]}")]
    return []


def _duplicate_nodes(
    base: tuple[Any, ...], nodes: list[dict[str, Any]]
) -> list[tuple[tuple[Any, ...], str]]:
    def place(node: dict[str, Any]) -> Any:
        where = (node.get("host"), node.get("pgdata"))
        return None if None in where else where

    return listed_twice(
        (*base, "nodes"),
        nodes,
        "node",
        "pgdata",
        place,
        lambda earlier, where: f"{earlier} already keeps its data in {where[1]} on {where[0]}",
    )


def _bound_ports(
    base: tuple[Any, ...], standby: dict[str, Any], nodes: list[dict[str, Any]]
) -> list[tuple[Any, Any, tuple[Any, ...], str]]:
    """(host, port, key path, what) of every server the PostgreSQL part binds."""
    bound: list[tuple[Any, Any, tuple[Any, ...], str]] = []
    for i, node in enumerate(nodes):
        host = node.get("listen") or node.get("host")
        for key, what in (("port", "PostgreSQL"), ("rest_port", "Patroni's REST API")):
            port = node.get(key, 5432 if key == "port" else 8008)
            bound.append((host, port, (*base, "nodes", i, key), f"{what} of nodes[{i}]"))
    for key in ("write_port", "read_port"):
        if key in standby:
            listen = standby.get("listen", "127.0.0.1")
            bound.append((listen, standby[key], (*base, key), f"HAProxy's {key}"))
    return bound


def _port_clashes(
    base: tuple[Any, ...], standby: dict[str, Any], nodes: list[dict[str, Any]]
) -> list[tuple[tuple[Any, ...], str]]:
    """Two servers of this table bound to one port of one address (HAProxy's included)."""
    bound = _bound_ports(base, standby, nodes)
    problems: list[tuple[tuple[Any, ...], str]] = []
    for j, (host, port, path, _) in enumerate(bound):
        for other_host, other_port, _, other_what in bound[:j]:
            same_host = host == other_host or {host, other_host} & WILDCARD_HOSTS
            if port == other_port and same_host:
                problems.append((path, f"port {port} on {host} is already used by {other_what}"))
                break
    return problems


def _seconds(value: Any, default: int) -> int | None:
    """Whole seconds of a duration key, or None when it is not one (its own error says so)."""
    from pydantic_core import PydanticCustomError

    from safehold.dr.fields import parse_interval

    if value is None:
        return default
    if not isinstance(value, str):
        return None
    try:
        return int(parse_interval(value).total_seconds())
    except PydanticCustomError:
        return None


def _timing_problems(
    base: tuple[Any, ...], standby: dict[str, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    """Patroni's own limits, which it would otherwise adjust silently at run time."""
    ttl = _seconds(standby.get("ttl"), PATRONI_MIN_TTL)
    loop_wait = _seconds(standby.get("loop_wait"), 2)
    retry = _seconds(standby.get("retry_timeout"), 9)
    problems: list[tuple[tuple[Any, ...], str]] = []
    for key, value, least in (
        ("ttl", ttl, PATRONI_MIN_TTL),
        ("loop_wait", loop_wait, PATRONI_MIN_LOOP_WAIT),
        ("retry_timeout", retry, PATRONI_MIN_RETRY_TIMEOUT),
    ):
        if value is not None and value < least:
            problems.append(((*base, key), f"Patroni's minimum is {least}s, got {value}s"))
    if problems or None in (ttl, loop_wait, retry):
        return problems
    assert ttl is not None and loop_wait is not None and retry is not None
    if loop_wait + 2 * retry > ttl:
        key = "ttl" if "ttl" in standby else "retry_timeout"
        problems.append(
            (
                (*base, key),
                f"Patroni needs loop_wait + 2 x retry_timeout <= ttl ({loop_wait}s + 2 x "
                f"{retry}s > {ttl}s): it would shorten them itself",
            )
        )
    return problems


def standby_doc(standby: Standby, service: str) -> dict[str, Any]:
    """The table as ``plan --json`` shows it (durations in seconds, defaults filled in)."""
    doc = standby.model_dump(mode="python")
    for key, value in doc.items():
        if isinstance(value, timedelta):
            seconds = value.total_seconds()
            doc[key] = int(seconds) if seconds == int(seconds) else seconds
    doc["scope"] = standby.scope or service
    doc["app"] = app_doc(standby.app) if standby.app is not None else None
    return doc


def standby_lines(standby: Standby, service: str) -> list[str]:
    """The table as ``plan`` shows it: the PostgreSQL cluster, the application pair."""
    lines = _postgres_lines(standby, service) if standby.nodes else ["  standby:"]
    return lines + (app_lines(standby.app) if standby.app is not None else [])


def _postgres_lines(standby: Standby, service: str) -> list[str]:
    """Nodes, HAProxy's ports, Patroni's timings."""
    s = standby
    sync = "synchronous" if s.synchronous_mode else "asynchronous"
    reads = f", reads {s.listen}:{s.read_port}" if s.read_port is not None else ""
    lines = [
        f"  standby (Patroni scope {s.scope or service}, etcd {', '.join(s.etcd)}): {sync},"
        f" watchdog {s.watchdog}",
        f"    HAProxy writes {s.listen}:{s.write_port}{reads}; checks every"
        f" {_text(s.check_interval)} ({_text(s.check_down_interval)} while down), down after"
        f" {s.check_fall}, up after {s.check_rise}",
        f"    Patroni ttl {_text(s.ttl)}, loop_wait {_text(s.loop_wait)}, retry_timeout"
        f" {_text(s.retry_timeout)}; replicas from the repository:"
        f" {'yes' if s.replicas_from_backup else 'no'}; archiving: {'yes' if s.archive else 'no'}",
    ]
    lines += [
        f"    node {n.name}: {n.host}:{n.port} (REST {n.rest_port}) data {n.pgdata}"
        for n in s.nodes
    ]
    return lines


def _text(value: timedelta) -> str:
    from safehold.dr.fields import format_interval

    if value.total_seconds() != int(value.total_seconds()):
        return f"{int(value.total_seconds() * 1000)}ms"
    return format_interval(value)
