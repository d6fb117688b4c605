"""Serving the dashboard with uvicorn: on a thread of the daemon, or in the foreground
for ``safehold serve``.

The socket is bound here, before uvicorn starts, so that a port in use is one clear error
at start (uvicorn itself would log it and exit the thread) and port 0 works in tests.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId
from safehold.dr.status import ProtectionStatus
from safehold.errors import SafeholdError
from safehold.service.http.auth import load_authenticator
from safehold.service.http.redact import Redactor, policy_secrets
from safehold.service.http.state import Dashboard
from safehold.service.metrics import parse_listen

__all__ = ["DashboardUnavailable", "HttpServer", "build"]

log = logging.getLogger("safehold.http")


class DashboardUnavailable(SafeholdError):
    """{0}"""


def _bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DashboardUnavailable(
            f"cannot serve the dashboard on {listen}: {exc.strerror or exc} (set [daemon]"
            ' http to another HOST:PORT, or "off")'
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def build(
    policy: Policy,
    config_path: str,
    state_dir: Path,
    status: Callable[[], ProtectionStatus | None],
    request_jobs: Callable[[list[JobId]], None] | None,
    listen: str,
) -> HttpServer:
    """Read the credentials and secrets, make the app, bind ``listen``; not serving yet."""
    from safehold.service.http.app import create_app

    settings = policy.daemon
    tls = settings.http_tls_cert is not None
    auth = load_authenticator(settings.http_auth, listen, tls)
    redactor = Redactor([*policy_secrets(policy), *auth.secrets()])
    dashboard = Dashboard(policy, config_path, state_dir, status, redactor, request_jobs)
    return HttpServer(create_app(dashboard, auth), dashboard, _bind(listen), policy)


class HttpServer:
    """uvicorn on a bound socket; ``url`` says where."""

    def __init__(self, app: object, dashboard: Dashboard, sock: socket.socket, policy: Policy):
        import uvicorn

        settings = policy.daemon
        self.dashboard = dashboard
        self.socket = sock
        self.config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=settings.http_tls_cert,
            ssl_keyfile=settings.http_tls_key,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None
        scheme = "https" if settings.http_tls_cert else "http"
        host, port = sock.getsockname()[:2]
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"

    def run(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (``safehold serve``)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.dashboard.close()

    def start(self) -> HttpServer:
        """Serve on a thread of its own (the daemon); returns once it accepts requests."""
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not self.server.started:
            raise DashboardUnavailable("the dashboard's HTTP server did not start (see the log)")
        return self

    def close(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.socket.close()
        self.dashboard.close()
