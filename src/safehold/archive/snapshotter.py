"""One backup run from start to snapshot: parent choice, writer, archiver, summary."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import BinaryIO

from safehold import __version__
from safehold.archive.backup import (
    Archiver,
    BackupStats,
    count_totals,
    normalize_paths,
    split_missing,
)
from safehold.archive.dry_run import DryRunSaver
from safehold.archive.excludes import Excluder
from safehold.archive.metadata import user_name
from safehold.archive.progress import NullProgress, Progress
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, format_time, now, parse_time
from safehold.repo.writer import BlobWriter

__all__ = ["BackupRequest", "BackupResult", "run_backup"]


@dataclass
class BackupRequest:
    paths: list[str]
    tags: list[str]
    hostname: str | None = None
    excludes: list[str] | None = None
    iexcludes: list[str] | None = None  # matched whatever the case (--iexclude)
    exclude_caches: bool = False
    one_file_system: bool = False
    time: str | None = None
    force: bool = False
    stdin: BinaryIO | None = None
    stdin_filename: str = "stdin"
    parent: str | None = None
    dry_run: bool = False  # read and hash everything, write nothing (archive/dry_run.py)
    # Called before the index and the snapshot are written: raises if the repository lock
    # lapsed, since a prune may then have removed packs this backup counts on.
    ensure_locked: Callable[[], None] | None = None


@dataclass
class BackupResult:
    snapshot: Snapshot
    stats: BackupStats
    data_added: int
    duration: float

    def summary(self) -> dict[str, object]:
        s = self.stats
        return {
            "snapshot_id": self.snapshot.id,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "dirs_new": s.dirs_new,
            "dirs_changed": s.dirs_changed,
            "dirs_unmodified": s.dirs_unmodified,
            "total_files_processed": s.total_files_processed,
            "total_bytes_processed": s.total_bytes_processed,
            "data_added": self.data_added,
            "total_duration": round(self.duration, 3),
            "errors": len(s.errors),
        }


def run_backup(
    repo: Repository, request: BackupRequest, progress: Progress | None = None
) -> BackupResult:
    started = time.monotonic()
    started_ns = time.time_ns()
    progress = progress or NullProgress()
    hostname = request.hostname or socket.gethostname()
    snapshot_time = format_time(parse_time(request.time)) if request.time else now()
    excluder = Excluder(request.excludes or [], request.exclude_caches, request.iexcludes or ())
    missing: list[tuple[str, str]] = []
    if request.stdin is not None:
        name = request.stdin_filename
        paths = [os.fsencode(name if name.startswith("/") else "/" + name)]
    elif request.paths:
        present, missing = split_missing(request.paths)
        if not present:
            named = "; ".join(f"{path}: {why}" for path, why in missing)
            raise InvalidArgument(f"nothing to back up, nothing recorded: {named}")
        paths = normalize_paths(present)
    else:
        raise InvalidArgument("nothing to back up: give at least one path, or --stdin")
    for path, why in missing:  # counted with the unreadable files: the backup exits 3
        progress.error(path, why)
    path_texts = [os.fsdecode(p) for p in paths]
    parent = _parent_snapshot(repo, request, hostname, path_texts)
    stop_counting = threading.Event()
    if request.stdin is None and progress.wants_totals:
        threading.Thread(
            target=_count, args=(paths, excluder, progress, stop_counting), daemon=True
        ).start()
    try:
        with _writer(repo, request) as writer:
            archiver = Archiver(
                repo,
                writer,
                excluder,
                one_file_system=request.one_file_system,
                force=request.force,
                progress=progress,
                parent_started_ns=_started_ns(parent),
            )
            archiver.stats.errors.extend(missing)
            if request.stdin is not None:
                tree = archiver.backup_stream(request.stdin, paths[0])
            else:
                tree = archiver.backup_paths(paths, parent.tree if parent else None)
    finally:
        stop_counting.set()
    duration = time.monotonic() - started
    snapshot = Snapshot(
        time=snapshot_time,
        tree=tree,
        paths=path_texts,
        hostname=hostname,
        username=user_name(os.getuid()),
        tags=sorted(set(request.tags)),
        parent=parent.id if parent else None,
        program_version=f"safehold {__version__}",
    )
    # a dry run compresses nothing: what it would add is counted raw
    added = writer.stats.raw_bytes_new if request.dry_run else writer.stats.stored_bytes
    result = BackupResult(snapshot, archiver.stats, added, duration)
    snapshot.summary = {k: v for k, v in result.summary().items() if k != "snapshot_id"}  # type: ignore[misc]
    snapshot.summary["backup_start_ns"] = started_ns
    if request.dry_run:
        return result
    if request.ensure_locked is not None:
        request.ensure_locked()
    repo.save_snapshot(snapshot)
    return result


def _writer(
    repo: Repository, request: BackupRequest
) -> AbstractContextManager[BlobWriter | DryRunSaver]:
    if request.dry_run:
        return nullcontext(DryRunSaver(repo))
    return repo.writer(before_index=request.ensure_locked)


def _parent_snapshot(
    repo: Repository, request: BackupRequest, hostname: str, paths: list[str]
) -> Snapshot | None:
    """The newest snapshot of the same host and paths: its files need not be read again."""
    snapshots = repo.list_snapshots()
    if request.parent:
        return find_snapshot(snapshots, request.parent)
    same = [s for s in snapshots if s.hostname == hostname and sorted(s.paths) == sorted(paths)]
    return same[-1] if same else None


def _count(
    paths: list[bytes], excluder: Excluder, progress: Progress, stop: threading.Event
) -> None:
    files = size = 0
    for file_size in count_totals(paths, excluder, stop):
        files += 1
        size += file_size
        if files % 1000 == 0:
            progress.set_total(files, size)
    if not stop.is_set():
        progress.set_total(files, size)


def _started_ns(parent: Snapshot | None) -> int:
    """When the parent backup began reading (its snapshot time, for older snapshots)."""
    if parent is None:
        return 0
    recorded = parent.summary.get("backup_start_ns")
    if isinstance(recorded, int):
        return recorded
    return int(parent.datetime.timestamp() * 1e9)
