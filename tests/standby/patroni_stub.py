"""A stand-in for Patroni's REST API: one tiny HTTP server per node on 127.0.0.1 that
answers ``GET /patroni`` with a document shaped like Patroni 4's. It is used only where a
cluster state cannot be caused quickly without Patroni (a replica that stopped streaming);
the real cluster is tests/standby/test_failover.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WAL = 50_331_856
REPLAYED_AT = "2026-12-06T02:00:00.000000+00:00"


def primary_doc(scope: str, name: str, streaming: list[str]) -> dict[str, Any]:
    """A running primary with ``streaming`` replicas connected (pg_stat_replication)."""
    return {
        "state": "running",
        "role": "primary",
        "server_version": 160004,
        "xlog": {"location": WAL},
        "timeline": 1,
        "replication": [
            {
                "usename": "replicator",
                "application_name": replica,
                "client_addr": "127.0.0.1",
                "state": "streaming",
                "sync_state": "async",
                "sync_priority": 0,
            }
            for replica in streaming
        ],
        "patroni": {"version": "4.0.4", "scope": scope, "name": name},
    }


def replica_doc(scope: str, name: str, replayed: int = WAL) -> dict[str, Any]:
    return {
        "state": "running",
        "role": "replica",
        "server_version": 160004,
        "xlog": {
            "received_location": replayed,
            "replayed_location": replayed,
            "replayed_timestamp": REPLAYED_AT,
            "paused": False,
        },
        "timeline": 1,
        "patroni": {"version": "4.0.4", "scope": scope, "name": name},
    }


class PatroniStub:
    """Node name → its server; ``docs[name]`` is what that node answers next."""

    def __init__(self, names: list[str]) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.servers = {name: self._server(name) for name in names}

    def port(self, name: str) -> int:
        return int(self.servers[name].server_address[1])

    def _server(self, name: str) -> ThreadingHTTPServer:
        docs = self.docs

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(docs[name]).encode()
                running = docs[name].get("state") == "running"
                self.send_response(200 if running and self.path == "/patroni" else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


@contextmanager
def patroni_stub(names: list[str]) -> Iterator[PatroniStub]:
    stub = PatroniStub(names)
    try:
        yield stub
    finally:
        stub.close()
