"""An HTTP proxy for fault tests: forwards to an object store and misbehaves on purpose.

It sits between a store client and a real server (SeaweedFS, Azurite) on 127.0.0.1 and,
for a seeded random share of the requests (or for the requests a test names), does one
of the things networks and object stores do:

- ``"503"``: answers 503 Slow Down without forwarding (S3 throttling);
- ``"429"``: answers 429 Too Many Requests without forwarding (GCS, Azure throttling);
- ``"500"``: answers 500 Internal Error without forwarding;
- ``"reset"``: closes the connection with a TCP reset, forwarding nothing;
- ``"stall"``: holds the request ``stall_seconds``, then closes the connection;
- ``"lost-reply"``: forwards the request, then answers 503 instead of the server's reply
  (the request took effect but the client thinks it failed: the If-None-Match retry race);
- ``"checksum-required"``: answers 400 InvalidRequest as AWS does to a PUT without a
  checksum header into a bucket with Object Lock.

Clients keep connections alive, so the proxy speaks HTTP/1.1 and forwards each request on
its own upstream connection per client connection.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

FAULTS = ("503", "429", "500", "reset", "stall", "lost-reply", "checksum-required")
CHECKSUM_REQUIRED = (
    "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with"
    " Object Lock parameters"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


Rule = Callable[[Request], str | None]


@dataclass
class FaultPlan:
    """Which requests fail and how: a seeded share at random, and rules a test adds."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    stall_seconds: float = 5.0
    rules: list[Rule] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    enabled: bool = True
    delay: float = 0.0  # added to every request that is forwarded (latency)
    bandwidth: float = 0.0  # bytes/s of one request, both ways (0: as fast as it goes)
    in_flight: int = 0
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._flight = threading.Lock()

    def enter(self) -> None:
        with self._flight:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._flight:
            self.in_flight -= 1

    def choose(self, request: Request) -> str | None:
        with self._lock:
            self.requests += 1
            if not self.enabled:
                return None
            fault = None
            for rule in self.rules:
                fault = rule(request)
                if fault:
                    break
            if fault is None:
                roll = self._random.random()
                for name, rate in self.rates.items():
                    if roll < rate:
                        fault = name
                        break
                    roll -= rate
            if fault:
                self.injected[fault] += 1
            return fault

    def once(self, fault: str, method: str, path_contains: str, times: int = 1) -> None:
        """The next ``times`` requests with this method whose path contains the text fail."""
        left = [times]

        def rule(request: Request) -> str | None:
            if left[0] > 0 and request.method == method and path_contains in request.path:
                left[0] -= 1
                return fault
            return None

        self.rules.append(rule)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: ClassVar[tuple[str, int]]
    plan: ClassVar[FaultPlan]

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _upstream(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self, "_conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            self._conn = conn
        return conn

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        fault = self.plan.choose(request)
        if fault == "reset":
            self._reset()
            return
        if fault == "stall":
            time.sleep(self.plan.stall_seconds)
            self.close_connection = True
            return
        if fault in ("503", "429", "500"):
            self._error(int(fault))
            return
        if fault == "checksum-required":
            self._error(400, "InvalidRequest", CHECKSUM_REQUIRED)
            return
        self.plan.enter()  # counted until the reply is ready, before the client can see it
        try:
            if self.plan.delay:
                time.sleep(self.plan.delay)
            status, reason, headers, payload = self._forward(body)
            if self.plan.bandwidth:  # a WAN link: each connection has its own ceiling
                time.sleep((len(body) + len(payload)) / self.plan.bandwidth)
        finally:
            self.plan.leave()
        if fault == "lost-reply":
            self._error(503)
            return
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            lengths = [v for k, v in headers if k.lower() == "content-length"]
            self.send_header("Content-Length", lengths[0] if lengths else "0")
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in (1, 2):
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                return response.status, response.reason, response.getheaders(), payload
            except (ConnectionError, http.client.HTTPException):
                conn.close()  # a kept-alive upstream connection the server closed
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _error(
        self, status: int, code: str = "", message: str = "injected by the fault proxy"
    ) -> None:
        codes = {503: "SlowDown", 429: "TooManyRequests", 500: "InternalError"}
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code or codes[status]}</Code>'
            f"<Message>{message}</Message></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if status in (503, 429):
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 (http.server names)


@dataclass
class FaultProxy:
    endpoint: str
    plan: FaultPlan


@contextmanager
def fault_proxy(upstream: str, plan: FaultPlan) -> Iterator[FaultProxy]:
    """A proxy on a free port of 127.0.0.1 in front of ``upstream`` (``http://host:port``)."""
    host, port = upstream.removeprefix("http://").rstrip("/").split(":")
    handler = type("Handler", (_Handler,), {"upstream": (host, int(port)), "plan": plan})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield FaultProxy(f"http://127.0.0.1:{server.server_address[1]}", plan)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
