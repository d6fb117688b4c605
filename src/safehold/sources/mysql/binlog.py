"""Binary logs in the repository: ``binlog/<instance>/<file name>``, one object per file.

Each object is ``seal(master.encryption, payload(file bytes))``, the sealing of index and
snapshot documents (docs/FORMAT.md §2), like PostgreSQL's WAL objects. Only *closed*
binlogs are archived (a file is closed once the server has moved on to the next one), so
an object never changes; ``--flush`` rotates the current log first (FLUSH BINARY LOGS),
which is how a short RPO is had without rewriting objects. Objects are written
create-if-absent: archiving a file again is a no-op when the content is the same and an
error when it differs (two servers archiving under one instance name).

The event headers (timestamp, type, size: 19 bytes, the same since MySQL 5.0) are read
here directly, to tell the time of the last transaction in a file without a server.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from safehold.errors import CorruptObject, InvalidArgument, LogConflict, NotFound, SafeholdError
from safehold.repo.repository import Repository
from safehold.sources.mysql.client import MysqlConn, MysqlError
from safehold.storage.base import ObjectStore

__all__ = [
    "ArchiveRun",
    "BinlogConflict",
    "BinlogMissing",
    "archive_binlogs",
    "binlog_key",
    "binlog_number",
    "commit_times",
    "fetch_binlog",
    "last_commit_time",
    "list_binlogs",
    "list_instances",
    "push_binlog",
]

PREFIX = "binlog/"
MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, event size, next pos, flags
QUERY_EVENT, XID_EVENT = 2, 16  # the events that end a transaction (or are DDL)
INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME = re.compile(r"^[A-Za-z0-9._-]+\.(\d{6,})$")


class BinlogConflict(SafeholdError):
    """{0} is already archived with different content; refusing to overwrite it"""

    exit_code = 2


class BinlogMissing(SafeholdError):
    """binary log {0} is not in the repository"""

    exit_code = 4


def binlog_number(name: str) -> int:
    m = NAME.match(name)
    if m is None:
        raise CorruptObject(name, "not a binary log file name")
    return int(m.group(1))


def binlog_key(instance: str, name: str) -> str:
    if not INSTANCE.match(instance):
        raise InvalidArgument(f"instance name {instance!r}: use letters, digits, '.', '_', '-'")
    binlog_number(name)
    return f"{PREFIX}{instance}/{name}"


def push_binlog(repo: Repository, instance: str, name: str, data: bytes) -> bool:
    """Archive one closed binlog; False when the same content was already there."""
    key = binlog_key(instance, name)
    try:
        return repo.put_log_file(key, data)
    except LogConflict:
        raise BinlogConflict(key) from None


def fetch_binlog(repo: Repository, instance: str, name: str) -> bytes:
    key = binlog_key(instance, name)
    try:
        return repo.get_log_file(key)
    except NotFound:
        raise BinlogMissing(key) from None


def list_instances(store: ObjectStore) -> list[str]:
    return sorted(
        {info.key.split("/")[1] for info in store.list(PREFIX) if info.key.count("/") == 2}
    )


def list_binlogs(store: ObjectStore, instance: str) -> list[str]:
    """Archived binlog names of one instance, in log order."""
    names = []
    for info in store.list(f"{PREFIX}{instance}/"):
        name = info.key.rsplit("/", 1)[-1]
        if NAME.match(name):
            names.append(name)
    return sorted(names, key=binlog_number)


def commit_times(data: bytes, start: int = 4) -> Iterator[tuple[int, datetime]]:
    """(end position, time) of every transaction end (XID) or DDL (query) event."""
    if data[:4] != MAGIC:
        raise CorruptObject("binlog", "no binlog magic number")
    pos = max(start, 4)
    while pos + HEADER.size <= len(data):
        stamp, kind, _server, size, _next, _flags = HEADER.unpack_from(data, pos)
        if size < HEADER.size:
            break  # a torn tail (a copy of a log being written): stop at the last whole event
        pos += size
        if pos > len(data):
            break
        if kind in (QUERY_EVENT, XID_EVENT):
            yield pos, datetime.fromtimestamp(stamp, UTC)


def last_commit_time(
    data: bytes, before: datetime | None = None, start: int = 4
) -> datetime | None:
    """The newest transaction time in a binlog (only those strictly before ``before``)."""
    newest = None
    for _, moment in commit_times(data, start):
        if before is not None and moment >= before:
            break
        newest = moment
    return newest


@dataclass
class ArchiveRun:
    stored: list[str]
    already: list[str]
    missing: list[str]  # closed logs the server no longer has (purged before archiving)
    current: str | None


def archive_binlogs(
    repo: Repository, conn: MysqlConn, instance: str | None = None, flush: bool = False
) -> ArchiveRun:
    """Copy every closed binlog the repository lacks; ``flush`` closes the current one first."""
    facts = conn.facts()
    if not facts.log_bin or not facts.log_bin_basename:
        raise MysqlError("binary logging is off (log_bin): there is nothing to archive")
    instance = instance or facts.default_instance()
    if flush:
        conn.query("FLUSH BINARY LOGS")
    names = [row[0] for row in conn.query("SHOW BINARY LOGS")]
    status = conn.query("SHOW MASTER STATUS")
    current = status[0][0] if status else None
    directory = os.path.dirname(facts.log_bin_basename)
    archived = set(list_binlogs(repo.store, instance))
    run = ArchiveRun([], [], [], current)
    for name in names:
        if name == current:
            continue
        if name in archived:
            run.already.append(name)
            continue
        try:
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            run.missing.append(name)
            continue
        (run.stored if push_binlog(repo, instance, name, data) else run.already).append(name)
    return run
