"""SQLite: a consistent copy of a live database through SQLite's online backup API.

Backup: ``sqlite3.Connection.backup`` copies every page in one step into a temporary file
(in the database's own directory by default, so the copy never needs more memory than
SQLite's page cache). One step means one read transaction: the copy is the database as of
one moment, whatever the writers do meanwhile (in WAL mode they go on writing; in rollback
mode they wait for the copy, up to their busy timeout). Stepwise copying is avoided on
purpose: every write by another connection restarts it, so under steady writes it might
never finish. The copy is then stored with ``command.save_stream`` (content-defined
chunks, so an unchanged part of the database is not stored twice).

Restore: the stored copy is written to a temporary file beside the target, ``PRAGMA
integrity_check`` must say ``ok``, then it is renamed into place (and a stale ``-wal`` /
``-shm`` of the old database removed, since SQLite would otherwise replay it into the new
file).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from safehold.archive.browse import dump_file
from safehold.archive.progress import Progress
from safehold.archive.snapshotter import BackupResult
from safehold.errors import InvalidArgument, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, format_time
from safehold.sources.command import StreamSpec, save_stream, single_file

__all__ = [
    "SqliteError",
    "SqliteRestoreResult",
    "backup_sqlite",
    "default_name",
    "restore_sqlite",
    "sqlite_snapshots",
]

KIND = "sqlite"
TAG = "sqlite"
BUSY_TIMEOUT = 60.0


class SqliteError(SafeholdError):
    """SQLite: {0}"""


def backup_sqlite(
    repo: Repository,
    database: str,
    spec: StreamSpec | None = None,
    tmpdir: str | None = None,
    progress: Progress | None = None,
) -> BackupResult:
    """Copy ``database`` with the online backup API and store the copy as one file."""
    database = os.path.abspath(database)
    if not os.path.isfile(database):
        raise InvalidArgument(f"{database} is not a file")
    spec = spec or StreamSpec(default_name(database))
    fd, copy_path = tempfile.mkstemp(
        prefix=f".{os.path.basename(database)}.safehold-",
        suffix=".tmp",
        dir=tmpdir or os.path.dirname(database),
    )
    os.close(fd)
    try:
        facts = _copy(database, copy_path)
        spec.source = {"kind": KIND, "database": database, **facts, **spec.source}
        spec.tags = sorted({TAG, *spec.tags})
        with open(copy_path, "rb") as f:
            return save_stream(repo, f, spec, progress=progress)
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(copy_path + suffix)


def default_name(database: str) -> str:
    return "sqlite/" + os.path.basename(database)


def _copy(database: str, copy_path: str) -> dict[str, Any]:
    """The online backup, in one step; returns what the snapshot records about it."""
    try:
        src = sqlite3.connect(f"file:{_uri_path(database)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise SqliteError(f"cannot open {database}: {exc}") from None
    try:
        dst = sqlite3.connect(copy_path)
        try:
            started = time.monotonic()
            src.backup(dst, pages=-1)
            copied_at = datetime.now(UTC)
            page_size, page_count = (
                dst.execute("PRAGMA page_size").fetchone()[0],
                dst.execute("PRAGMA page_count").fetchone()[0],
            )
            # the copy keeps the source's WAL flag; a plain rollback journal makes the
            # stored file self-contained (no -wal needed beside it after a restore)
            journal = src.execute("PRAGMA journal_mode").fetchone()[0]
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise SqliteError(f"online backup of {database} failed: {exc}") from None
    finally:
        src.close()
    return {
        "copied_at": format_time(copied_at),
        "copy_seconds": round(time.monotonic() - started, 3),
        "page_size": page_size,
        "page_count": page_count,
        "journal_mode": journal,
        "sqlite_version": sqlite3.sqlite_version,
    }


def _uri_path(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def sqlite_snapshots(repo: Repository) -> list[Snapshot]:
    return [s for s in repo.list_snapshots() if s.source.get("kind") == KIND]


@dataclass
class SqliteRestoreResult:
    snapshot: Snapshot
    path: str
    bytes_written: int
    integrity: str
    seconds: float


def restore_sqlite(
    repo: Repository, ref: str, target: str, overwrite: bool = False
) -> SqliteRestoreResult:
    """Write a SQLite snapshot to ``target``, check its integrity, then move it into place."""
    started = time.monotonic()
    snap = find_snapshot(sqlite_snapshots(repo), ref)
    target = os.path.abspath(target)
    if os.path.lexists(target) and not overwrite:
        raise InvalidArgument(f"{target} exists: remove it or use --force")
    node = single_file(repo, snap)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.safehold-", suffix=".tmp", dir=os.path.dirname(target)
    )
    try:
        with os.fdopen(fd, "wb") as f:
            written = dump_file(repo, node, f)
            f.flush()
            os.fsync(f.fileno())
        integrity = integrity_check(tmp)
        if integrity != "ok":
            raise SqliteError(f"the restored copy fails integrity_check: {integrity}")
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target + suffix)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return SqliteRestoreResult(snap, target, written, integrity, time.monotonic() - started)


def integrity_check(path: str) -> str:
    """``PRAGMA integrity_check``'s answer: ``ok`` or its first problems, joined."""
    try:
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"not a usable database ({exc})"
    return "; ".join(str(r[0]) for r in rows[:5])
