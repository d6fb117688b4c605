"""``[services.NAME.standby.app]``: an active and a passive instance of a stateless HTTP or
TCP service behind HAProxy.

HAProxy sends every request to the active instance while its health check passes and
to the passive one (a ``backup`` server) while it fails; nothing is replicated, since
the service keeps no state of its own. The model validates one table;
``app_problems`` checks what needs several keys at once (one active, a passive, an
instance listed twice, two servers on one port, an HTTP check without its path), so
that ``dr/load.py`` reports them with the file and line of the key. docs/standby.md
describes every key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from safehold.dr.fields import (
    AbsolutePath,
    Name,
    PolicyModel,
    PositiveInterval,
    Text,
    describe,
    fail,
    format_interval,
)
from safehold.dr.standby.addresses import WILDCARD_HOSTS, HostPort, Port, Problems, listed_twice

__all__ = ["AppInstance", "AppPair", "app_doc", "app_lines", "app_problems"]


def _check_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise fail("check_path", f"expected a path such as '/health', got {describe(value)}")
    return value


CheckPath = Annotated[str, BeforeValidator(_check_path)]


class AppInstance(PolicyModel):
    """One instance of the service: where it answers and how a drill stops and starts it."""

    name: Name
    address: HostPort  # HOST:PORT where HAProxy reaches it
    role: Literal["active", "passive"]
    # how a failover drill kills it: its pidfile (SIGKILL to that PID), a command, or
    # neither (SIGKILL to the process listening on its port, which must be on this host)
    pidfile: AbsolutePath | None = None
    stop_command: Text | None = None
    start_command: Text | None = None  # how the drill starts it again

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class AppPair(PolicyModel):
    """The instances and HAProxy's frontend and health checks for them."""

    mode: Literal["http", "tcp"] = "http"  # how HAProxy passes the traffic
    listen: Text = "127.0.0.1"  # HAProxy's frontend address
    port: Port  # HAProxy's frontend port: the clients' address
    check: Literal["http", "tcp"]  # http: GET check_path, expect check_status; tcp: connect
    check_path: CheckPath | None = None
    check_status: Annotated[int, Field(ge=100, le=599)] = 200
    check_interval: PositiveInterval = timedelta(seconds=1)  # HAProxy's inter
    check_fall: Annotated[int, Field(ge=1)] = 2
    check_rise: Annotated[int, Field(ge=1)] = 2
    check_timeout: PositiveInterval = timedelta(seconds=1)
    connect_timeout: PositiveInterval = timedelta(seconds=1)
    # HAProxy sends a request again, to the passive, when the active died while answering
    # it (retry-on empty-response); only for requests that are safe to repeat
    replay_requests: bool = False
    # the failover drill's objective for the time until the passive answers (default:
    # the service's RTO)
    failover_objective: PositiveInterval | None = None
    instances: list[AppInstance]

    @property
    def active(self) -> AppInstance:
        return next(i for i in self.instances if i.role == "active")

    @property
    def passives(self) -> list[AppInstance]:
        return [i for i in self.instances if i.role == "passive"]

    def instance(self, name: str) -> AppInstance | None:
        return next((i for i in self.instances if i.name == name), None)


def app_problems(
    base: tuple[Any, ...], app: dict[str, Any], taken: list[tuple[Any, Any, tuple[Any, ...], str]]
) -> Problems:
    """What one key alone cannot show. ``taken``: (host, port, key path, what) of the
    servers the rest of the standby table binds, for port clashes."""
    instances = [i for i in app.get("instances") or [] if isinstance(i, dict)]
    problems = _roles(base, app, instances)
    problems += _duplicates(base, instances)
    problems += _port_clashes(base, app, instances, taken)
    if app.get("replay_requests") is True and app.get("mode") == "tcp":
        problems.append(
            ((*base, "replay_requests"), 'HAProxy replays requests in mode = "http" only')
        )
    if app.get("check") == "http" and "check_path" not in app:
        problems.append(
            ((*base, "check"), 'check = "http" needs check_path, the path HAProxy GETs')
        )
    return problems


def _roles(base: tuple[Any, ...], app: dict[str, Any], instances: list[dict[str, Any]]) -> Problems:
    actives = [i for i, inst in enumerate(instances) if inst.get("role") == "active"]
    passives = [i for i, inst in enumerate(instances) if inst.get("role") == "passive"]
    if "instances" not in app or len(actives) + len(passives) < len(instances):
        return []  # a missing table or a bad role has its own error
    if len(actives) > 1:
        return [
            (
                (*base, "instances", actives[1], "role"),
                f"instances[{actives[0]}] is already the active instance; the others are"
                ' role = "passive"',
            )
        ]
    if not actives:
        return [((*base, "instances"), 'an application pair needs one role = "active" instance')]
    if not passives:
        return [((*base, "instances"), 'an application pair needs a role = "passive" instance too')]
    return []


def _duplicates(base: tuple[Any, ...], instances: list[dict[str, Any]]) -> Problems:
    return listed_twice(
        (*base, "instances"),
        instances,
        "instance",
        "address",
        lambda inst: inst.get("address"),
        lambda earlier, address: f"{earlier} already answers at {address}",
    )


def _split(address: Any) -> tuple[Any, Any]:
    if not isinstance(address, str) or ":" not in address:
        return None, None
    host, _, port = address.rpartition(":")
    return host, int(port) if port.isdigit() else None


def _port_clashes(
    base: tuple[Any, ...],
    app: dict[str, Any],
    instances: list[dict[str, Any]],
    taken: list[tuple[Any, Any, tuple[Any, ...], str]],
) -> Problems:
    """HAProxy's frontend on the port of an instance or of the PostgreSQL table's servers
    (an instance's own address clash is ``_duplicates``')."""
    if "port" not in app:
        return []
    listen, port = app.get("listen", "127.0.0.1"), app["port"]
    bound = list(taken)
    for i, inst in enumerate(instances):
        host, inst_port = _split(inst.get("address"))
        bound.append((host, inst_port, (*base, "instances", i, "address"), f"instances[{i}]"))
    for host, other_port, _, what in bound:
        same_host = host == listen or {host, listen} & WILDCARD_HOSTS
        if other_port == port and same_host:
            return [((*base, "port"), f"port {port} on {listen} is already used by {what}")]
    return []


def app_doc(app: AppPair) -> dict[str, Any]:
    """The table as ``plan --json`` shows it (durations in seconds, defaults filled in)."""
    doc = app.model_dump(mode="python")
    for key, value in doc.items():
        if isinstance(value, timedelta):
            doc[key] = value.total_seconds()
    return doc


def app_lines(app: AppPair) -> list[str]:
    """The table as ``plan`` shows it: the frontend, the checks, each instance."""
    check = f"GET {app.check_path} = {app.check_status}" if app.check == "http" else "connect"
    lines = [
        f"    application pair ({app.mode}) behind HAProxy {app.listen}:{app.port}: check"
        f" {check} every {format_interval(app.check_interval)}, down after"
        f" {app.check_fall}, up after {app.check_rise}",
    ]
    lines += [f"    instance {i.name}: {i.address} ({i.role})" for i in app.instances]
    return lines
