"""HAProxy's section for an application pair: the active instance a server, the passive
ones ``backup`` servers, both health-checked.

The timings are chosen so that the passive instance takes the traffic within about a
second of the active one dying, and so that requests in flight meanwhile are held
rather than failed (docs/standby.md, "Application services", explains the numbers):

- ``inter`` (check_interval) between checks of a healthy instance; after the first
  failure ``fastinter`` (a quarter of it, 250 ms by default) until ``fall`` failures in
  a row mark it down, so a dead instance is down within inter + (fall - 1) x fastinter.
- ``observe layer4 error-limit 1 on-error fail-check``: a client connection the active
  refuses counts as a failed check at once, so under traffic the active is marked down
  after ``fall`` refused connections, before the next scheduled check.
- ``retries`` with ``option redispatch 1``: a request whose connection the dead active
  refused is tried again, every min(connect timeout, 1 s), each time on whichever server
  is usable then, so it lands on the passive once the active is marked down; enough
  retries to outlast the slowest detection (every check timing out).
- ``replay_requests``: ``retry-on conn-failure empty-response``, so a request the
  active took and died answering goes to the passive too (HAProxy's default retries only
  connections that failed; a dying process may still accept one and then reset it).
- ``on-marked-down shutdown-sessions``: connections to an active marked down are cut
  at once instead of hanging on a half-dead process.
- HTTP pairs add ``X-Safehold-Instance`` (the serving instance's name) to every
  response: status and drills read which instance answered.
"""

from __future__ import annotations

import math
from datetime import timedelta

from safehold.dr.standby.app_policy import AppPair

__all__ = ["INSTANCE_HEADER", "app_retries", "app_section", "fast_interval", "haproxy_duration"]

INSTANCE_HEADER = "X-Safehold-Instance"
FASTINTER_SHARE = 4  # fastinter = inter / 4
FASTINTER_FLOOR = timedelta(milliseconds=100)


def haproxy_duration(value: timedelta) -> str:
    """A duration as HAProxy reads it (``1s``, ``250ms``)."""
    millis = round(value.total_seconds() * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def fast_interval(app: AppPair) -> timedelta:
    """HAProxy's fastinter: the pace of checks once one failed."""
    return max(app.check_interval / FASTINTER_SHARE, FASTINTER_FLOOR)


def app_retries(app: AppPair) -> int:
    """Retries that hold a request until the dead active is marked down: the slowest
    detection (a check every inter, then fastinter, each timing out) over the pause
    HAProxy makes between two connection attempts, min(connect timeout, 1 s)."""
    slowest = (
        app.check_interval
        + (app.check_fall - 1) * fast_interval(app)
        + app.check_fall * app.check_timeout
    )
    pause = min(app.connect_timeout, timedelta(seconds=1))
    return math.ceil(slowest / pause) + 1


def app_section(service: str, app: AppPair) -> list[str]:
    """The ``listen`` section of ``service``'s application pair."""
    if app.check == "http":
        check = [
            "    option httpchk",
            f"    http-check send meth GET uri {app.check_path}",
            f"    http-check expect status {app.check_status}",
        ]
    else:
        check = []  # a plain connection: HAProxy's default check
    logged = ["    mode http", "    option httplog"] if app.mode == "http" else ["    mode tcp"]
    header = [f"    http-response set-header {INSTANCE_HEADER} %s"] if app.mode == "http" else []
    inter = haproxy_duration(app.check_interval)
    return [
        "",
        f"listen {service}_app",
        f"    bind {app.listen}:{app.port}",
        *logged,
        *(["    timeout client 30s", "    timeout server 30s"] if app.mode == "http" else []),
        f"    timeout connect {haproxy_duration(app.connect_timeout)}",
        f"    timeout check {haproxy_duration(app.check_timeout)}",
        f"    retries {app_retries(app)}",
        "    option redispatch 1",
        *(["    retry-on conn-failure empty-response"] if app.replay_requests else []),
        *check,
        *header,
        f"    default-server inter {inter} fastinter {haproxy_duration(fast_interval(app))}"
        f" downinter {inter} fall {app.check_fall} rise {app.check_rise}"
        " observe layer4 error-limit 1 on-error fail-check on-marked-down shutdown-sessions",
        *(
            f"    server {i.name} {i.address} check" + (" backup" if i.role == "passive" else "")
            for i in app.instances
        ),
    ]
