"""A small stateless HTTP service for the application-pair tests: ``GET /health`` answers
200, every other path its name, so a test sees which instance served it.

Run as ``python app_server.py NAME PORT PIDFILE``; it binds 127.0.0.1 and writes its PID
to PIDFILE once it listens.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class NamedServer(ThreadingHTTPServer):
    daemon_threads = True
    name = ""

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy's health checks reset their connections: not worth a traceback


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: NamedServer

    def do_GET(self) -> None:
        body = b"ok\n" if self.path == "/health" else f"{self.server.name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the tests read HAProxy's log


def main() -> None:
    name, port, pidfile = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    server = NamedServer(("127.0.0.1", port), Handler)
    server.name = name
    pidfile.write_text(f"{os.getpid()}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
