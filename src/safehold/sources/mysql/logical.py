"""Logical backups: mariadb-dump streamed into the repository, restored with the client.

The dump is one consistent read (``--single-transaction``: one InnoDB snapshot, no table
locks) of every database but ``mysql``, plus routines, events and triggers, plus users and
grants as portable ``CREATE USER IF NOT EXISTS`` / ``GRANT`` statements (``--system=users
--insert-ignore``), so it restores into a fresh server without clobbering its root account.
``--master-data=2`` writes the binlog position of that snapshot as a comment; it is picked
out of the stream on its way into the repository and recorded as the recovery point.
The dump program's exit status is checked before the snapshot is written
(``command.save_stream``): a dump that fails half-way records nothing.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from typing import IO, Any, BinaryIO, cast

from safehold.archive.progress import Progress
from safehold.archive.snapshotter import BackupResult
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, now
from safehold.sources import external
from safehold.sources.command import StreamSpec, pipe_to_command, save_stream, single_file
from safehold.sources.mysql.client import MysqlConn, program

__all__ = ["DUMP_OPTIONS", "dump_snapshots", "restore_dump", "run_dump"]

KIND = "mysql-dump"
TAG = "mysql-dump"
DUMP_OPTIONS = (
    "--single-transaction",
    "--all-databases",
    "--ignore-database=mysql",
    "--system=users",
    "--insert-ignore",
    "--routines",
    "--events",
    "--triggers",
    "--master-data=2",
    "--hex-blob",
)
POSITION = re.compile(rb"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
GTID = re.compile(rb"gtid_slave_pos='([^']*)'")
OVERLAP = 256


class _Watcher:
    """A pass-through reader that notes the binlog position and GTID in a dump's comments."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._tail = b""
        self.found: dict[str, Any] = {}

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            window = self._tail + data
            if "binlog_file" not in self.found and (m := POSITION.search(window)):
                self.found["binlog_file"] = m.group(1).decode()
                self.found["binlog_pos"] = int(m.group(2))
            if m := GTID.search(window):
                self.found["gtid"] = m.group(1).decode()
            self._tail = window[-OVERLAP:]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def run_dump(
    repo: Repository,
    conn: MysqlConn,
    spec: StreamSpec,
    instance: str | None = None,
    progress: Progress | None = None,
) -> BackupResult:
    facts = conn.facts()
    argv = [program("dump"), *conn.args(), *DUMP_OPTIONS]
    started = now()
    with ExitStack() as stack:
        watcher = _Watcher(stack.enter_context(external.stream(argv)))

        def finish() -> None:
            stack.close()  # waits for mariadb-dump; raises if it failed
            spec.source.update(watcher.found)

        spec.source = {
            "kind": KIND,
            "instance": instance or facts.default_instance(),
            "started": started,
            **facts.record(),
            **spec.source,
        }
        spec.tags = sorted({TAG, *spec.tags})
        return save_stream(repo, cast(BinaryIO, watcher), spec, finish=finish, progress=progress)


def dump_snapshots(repo: Repository, instance: str | None = None) -> list[Snapshot]:
    return [
        s
        for s in repo.list_snapshots()
        if s.source.get("kind") == KIND and instance in (None, s.source.get("instance"))
    ]


def restore_dump(
    repo: Repository,
    conn: MysqlConn,
    ref: str,
    database: str | None = None,
    output: BinaryIO | None = None,
) -> tuple[Snapshot, int]:
    """Pipe a dump into the mariadb client: everything, or only ``database``."""
    snap = find_snapshot(dump_snapshots(repo), ref)
    argv = [program("client"), *conn.args()]
    if database is not None:
        if "`" in database:
            raise InvalidArgument(f"database name {database!r} contains a backquote")
        conn.query(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        # the client skips every statement whose default database is not this one
        argv += ["--one-database", database]
    node = single_file(repo, snap)
    return snap, pipe_to_command(repo, node, argv, output)
