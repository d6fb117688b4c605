"""What an application pair looks like now: each instance's health check, asked directly,
and which instance HAProxy's frontend sends requests to.

An instance is checked the way HAProxy checks it (``GET check_path`` expecting
``check_status``, or a TCP connection). Through the frontend of an HTTP pair the
answer names the instance that served it (``X-Safehold-Instance``, app_config.py);
through a TCP pair nothing can, so the serving instance is HAProxy's rule applied to
the checks: the active while it is healthy, else the first healthy passive.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass, field

from safehold.dr.standby.addresses import WILDCARD_HOSTS
from safehold.dr.standby.app_config import INSTANCE_HEADER
from safehold.dr.standby.app_policy import AppPair

__all__ = ["AppStatus", "InstanceStatus", "Probe", "app_status", "frontend_host", "probe"]

PROBE_TIMEOUT = 2.0


@dataclass
class InstanceStatus:
    name: str
    address: str
    role: str  # active or passive
    healthy: bool
    error: str | None = None


@dataclass
class AppStatus:
    frontend: str  # HAProxy's HOST:PORT
    frontend_answers: bool
    serving: str | None  # the instance requests go to now
    instances: list[InstanceStatus] = field(default_factory=list)
    frontend_error: str | None = None

    def problems(self) -> list[str]:
        """What an operator must hear about: an instance down, the passive serving, no
        healthy passive, nothing answering."""
        found = [f"{i.name} ({i.role}) is down: {i.error}" for i in self.instances if not i.healthy]
        healthy = [i for i in self.instances if i.healthy]
        active = next(i for i in self.instances if i.role == "active")
        if not self.frontend_answers:
            found.append(
                f"HAProxy's frontend {self.frontend} does not answer: {self.frontend_error}"
            )
        if not healthy:
            found.append("no instance answers: every request through HAProxy fails")
        elif active.healthy and not any(i.role == "passive" for i in healthy):
            found.append(f"no healthy passive: {active.name} runs alone")
        elif not active.healthy:
            found.append(f"the passive {self.serving} serves in place of {active.name}")
        return found


@dataclass(frozen=True)
class Probe:
    """One request as HAProxy's health check makes it."""

    ok: bool
    instance: str | None = None  # who answered, when HAProxy said so
    error: str | None = None


def probe(app: AppPair, host: str, port: int, timeout: float = PROBE_TIMEOUT) -> Probe:
    """``app``'s health check against HOST:PORT (an instance, or HAProxy's frontend)."""
    if app.check == "tcp":
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return Probe(True)
        except OSError as exc:
            return Probe(False, error=exc.strerror or str(exc))
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", app.check_path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Probe(False, error=getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    finally:
        conn.close()
    instance = response.getheader(INSTANCE_HEADER)
    if response.status != app.check_status:
        return Probe(False, instance, f"HTTP {response.status}, expected {app.check_status}")
    return Probe(True, instance)


def frontend_host(app: AppPair) -> str:
    """Where a client on this host reaches HAProxy's frontend."""
    return "127.0.0.1" if app.listen in WILDCARD_HOSTS else app.listen


def app_status(app: AppPair) -> AppStatus:
    """Every instance and the frontend probed once."""
    instances = []
    for inst in app.instances:
        found = probe(app, inst.host, inst.port)
        instances.append(InstanceStatus(inst.name, inst.address, inst.role, found.ok, found.error))
    front = probe(app, frontend_host(app), app.port)
    healthy = [i.name for i in instances if i.healthy]
    serving = front.instance if front.instance else None
    if serving is None and healthy:
        # HAProxy's rule: the active while it is healthy, else the first healthy passive
        serving = app.active.name if app.active.name in healthy else healthy[0]
    return AppStatus(f"{app.listen}:{app.port}", front.ok, serving, instances, front.error)
