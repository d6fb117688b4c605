"""Redis: the RDB snapshot a replica would receive, and a server brought up on it.

Backup: ``redis-cli --rdb -`` asks the server for a full synchronisation, as a new replica
does (the server forks, writes a point-in-time RDB and streams it), and writes the RDB to
stdout, which goes straight into the repository (``command.save_stream``: no snapshot
unless redis-cli exits 0). Nothing is written on the server's disk by this path unless the
server is configured with ``repl-diskless-sync no``.

Restore: the RDB is written as ``dump.rdb`` into a directory; with ``start`` a
``redis-server`` is started (daemonized, bound to 127.0.0.1 unless told) on that
directory, which loads it, and safehold waits until it answers PING with its keys loaded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field

from safehold.archive.browse import dump_file
from safehold.archive.progress import Progress
from safehold.archive.snapshotter import BackupResult
from safehold.errors import InvalidArgument, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot
from safehold.sources import external
from safehold.sources.command import StreamSpec, backup_command, single_file

__all__ = [
    "RedisConn",
    "RedisError",
    "RedisRestore",
    "backup_redis",
    "redis_snapshots",
    "restore_redis",
    "start_server",
]

KIND = "redis"
TAG = "redis"
RDB_NAME = "dump.rdb"


class RedisError(SafeholdError):
    """Redis: {0}"""


@dataclass(frozen=True)
class RedisConn:
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    password_file: str | None = None

    def args(self) -> list[str]:
        out: list[str] = []
        if self.socket:
            out += ["-s", self.socket]
        if self.host:
            out += ["-h", self.host]
        if self.port:
            out += ["-p", str(self.port)]
        return out

    def env(self) -> dict[str, str] | None:
        """The password goes in REDISCLI_AUTH, never on the command line."""
        if not self.password_file:
            return None
        with open(self.password_file) as f:
            return {**os.environ, "REDISCLI_AUTH": f.read().strip()}

    def command(self, *words: str) -> str:
        proc = external.run(["redis-cli", *self.args(), *words], env=self.env())
        text = proc.stdout.decode(errors="replace").strip()
        if text.startswith(("ERR", "NOAUTH", "WRONGPASS")):
            raise RedisError(f"{' '.join(words)}: {text}")
        return text

    def info(self, section: str) -> dict[str, str]:
        out = {}
        for line in self.command("INFO", section).splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
        return out


def backup_redis(
    repo: Repository, conn: RedisConn, spec: StreamSpec, progress: Progress | None = None
) -> BackupResult:
    server = conn.info("server")
    keyspace = conn.info("keyspace")
    spec.source = {
        "kind": KIND,
        "redis_version": server.get("redis_version"),
        "run_id": server.get("run_id"),
        "port": server.get("tcp_port"),
        "keyspace": keyspace,
        **spec.source,
    }
    spec.tags = sorted({TAG, *spec.tags})
    argv = ["redis-cli", *conn.args(), "--rdb", "-"]
    return backup_command(repo, argv, spec, progress, env=conn.env())


def redis_snapshots(repo: Repository) -> list[Snapshot]:
    return [s for s in repo.list_snapshots() if s.source.get("kind") == KIND]


@dataclass
class RedisRestore:
    snapshot: Snapshot
    path: str
    bytes_written: int
    started: bool = False
    port: int | None = None
    keys: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def restore_redis(
    repo: Repository,
    ref: str,
    directory: str,
    start: bool = False,
    port: int = 6379,
    bind: str = "127.0.0.1",
    timeout: float = 120.0,
) -> RedisRestore:
    """Write the RDB into ``directory`` (as dump.rdb); with ``start`` run a server on it."""
    started = time.monotonic()
    snap = find_snapshot(redis_snapshots(repo), ref)
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, RDB_NAME)
    if os.path.exists(path):
        raise InvalidArgument(f"{path} exists: restore into an empty directory")
    node = single_file(repo, snap)
    fd, tmp = tempfile.mkstemp(prefix=".dump.rdb.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            written = dump_file(repo, node, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    result = RedisRestore(snap, path, written)
    if start:
        start_server(directory, port, bind, timeout)
        conn = RedisConn(host=bind, port=port)
        result.started, result.port = True, port
        result.keys = conn.info("keyspace")
    result.seconds = time.monotonic() - started
    return result


def start_server(directory: str, port: int, bind: str, timeout: float) -> None:
    external.run(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            bind,
            "--dir",
            directory,
            "--dbfilename",
            RDB_NAME,
            "--daemonize",
            "yes",
            "--pidfile",
            os.path.join(directory, "redis.pid"),
            "--logfile",
            os.path.join(directory, "redis.log"),
        ]
    )
    conn = RedisConn(host=bind, port=port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = external.run(["redis-cli", *conn.args(), "PING"], check=False)
        if proc.stdout.strip() == b"PONG":
            return
        time.sleep(0.05)
    raise RedisError(
        f"redis-server on port {port} did not load {RDB_NAME} within {timeout:.0f} s "
        f"(see {os.path.join(directory, 'redis.log')})"
    )
