"""Any program's output as a snapshot, and a stored stream piped back into a program.

``backup_command`` runs a dump program (``mongodump --archive``, ``pg_dumpall``, ...)
through ``external.stream`` and stores its stdout as one file, deduplicated like any other.
The program's exit status is checked *before* the index and the snapshot are written
(``save_stream``'s ``finish`` callback, run in the writer's ``before_index`` hook and again
just before the snapshot): a program that fails, even after writing a full-looking dump,
leaves no snapshot, only packs that no index or snapshot names (prune removes them).

``save_stream`` is also how the SQLite, MariaDB and Redis sources store a stream: it is the
stream half of ``archive.snapshotter.run_backup`` plus a ``source`` record (kind and
recovery point) and the ``finish`` check.

``pipe_to_command`` feeds one stored file to a program's stdin (``mongorestore
--archive``); the program failing, or exiting before it read everything, is an error.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

from safehold import __version__
from safehold.archive.backup import Archiver, BackupStats
from safehold.archive.browse import dump_file, find_node, walk
from safehold.archive.excludes import Excluder
from safehold.archive.metadata import user_name
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.snapshotter import BackupResult
from safehold.archive.tree import Node
from safehold.errors import InvalidArgument, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, format_time, now, parse_time
from safehold.sources import external

__all__ = [
    "CommandClosedInput",
    "StreamSpec",
    "backup_command",
    "parse_command",
    "pipe_into",
    "pipe_to_command",
    "record_snapshot",
    "save_stream",
    "single_file",
    "stream_path",
]

COPY_SIZE = 1 << 20


class CommandClosedInput(SafeholdError):
    """{0} exited before reading the whole stream of {1} bytes; the restore is incomplete"""


@dataclass
class StreamSpec:
    """What to record for one stream: where it lives in the snapshot and what it is."""

    filename: str  # path inside the snapshot, e.g. "mongo.archive" or "mysql/all.sql"
    source: dict[str, Any] = field(default_factory=dict)  # may be filled in by ``finish``
    tags: list[str] = field(default_factory=list)
    hostname: str | None = None
    time: str | None = None
    ensure_locked: Callable[[], None] | None = None


def parse_command(text: str) -> list[str]:
    """A command line split as a POSIX shell would split words, but run without a shell.

    No pipes, redirections or variables: for those, write ``sh -c '...'`` explicitly.
    """
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise InvalidArgument(f"cannot parse command {text!r}: {exc}") from None
    if not argv:
        raise InvalidArgument("the command is empty")
    return argv


def stream_path(filename: str) -> bytes:
    parts = [p for p in filename.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\0" in filename:
        raise InvalidArgument(f"{filename!r} is not a usable file name")
    return os.fsencode("/" + "/".join(parts))


def save_stream(
    repo: Repository,
    stream: BinaryIO,
    spec: StreamSpec,
    finish: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> BackupResult:
    """Store ``stream`` as one file; ``finish`` (the producer's check) runs before the index.

    ``finish`` and then ``spec.ensure_locked`` run in the writer's ``before_index`` hook and
    once more before the snapshot is saved, so both must be cheap to call twice. Either
    raising means no snapshot.
    """
    started = time.monotonic()
    started_ns = time.time_ns()
    path = stream_path(spec.filename)
    hostname = spec.hostname or socket.gethostname()
    snapshot_time = format_time(parse_time(spec.time)) if spec.time else now()
    checks = [c for c in (finish, spec.ensure_locked) if c is not None]

    def before_commit() -> None:
        for check in checks:
            check()

    with repo.writer(before_index=before_commit) as writer:
        archiver = Archiver(repo, writer, Excluder([], False), progress=progress or NullProgress())
        tree = archiver.backup_stream(stream, path)
    before_commit()  # the writer skips its hook when nothing new was written
    return record_snapshot(
        repo,
        tree,
        [os.fsdecode(path)],
        spec,
        archiver.stats,
        writer.stats.stored_bytes,
        (started, started_ns),
        hostname=hostname,
        snapshot_time=snapshot_time,
    )


def record_snapshot(
    repo: Repository,
    tree: str,
    paths: list[str],
    spec: StreamSpec,
    stats: BackupStats,
    data_added: int,
    started: tuple[float, int],
    hostname: str | None = None,
    snapshot_time: str | None = None,
) -> BackupResult:
    """Save the snapshot of a source's backup (tree already stored and indexed)."""
    hostname = hostname or spec.hostname or socket.gethostname()
    parent = _parent(repo, hostname, paths)
    snapshot = Snapshot(
        time=snapshot_time or now(),
        tree=tree,
        paths=paths,
        hostname=hostname,
        username=user_name(os.getuid()),
        tags=sorted(set(spec.tags)),
        parent=parent.id if parent else None,
        program_version=f"safehold {__version__}",
        source=dict(spec.source),
    )
    result = BackupResult(snapshot, stats, data_added, time.monotonic() - started[0])
    snapshot.summary = {k: v for k, v in result.summary().items() if k != "snapshot_id"}  # type: ignore[misc]
    snapshot.summary["backup_start_ns"] = started[1]
    repo.save_snapshot(snapshot)
    return result


def _parent(repo: Repository, hostname: str, paths: list[str]) -> Snapshot | None:
    same = [s for s in repo.list_snapshots() if s.hostname == hostname and s.paths == paths]
    return same[-1] if same else None


def backup_command(
    repo: Repository,
    argv: Sequence[str],
    spec: StreamSpec,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
) -> BackupResult:
    """Run ``argv`` and store its stdout; no snapshot unless it exits 0."""
    spec.source = {"kind": "command", "program": os.path.basename(argv[0]), **spec.source}
    with ExitStack() as stack:
        out = stack.enter_context(external.stream(argv, env=env))
        # closing the stack waits for the program and raises ExternalCommandFailed if it
        # failed; on any other error the stack's exit kills it
        return save_stream(repo, cast(BinaryIO, out), spec, finish=stack.close, progress=progress)


def pipe_to_command(
    repo: Repository, node: Node, argv: Sequence[str], output: BinaryIO | None = None
) -> int:
    """Write a stored file into ``argv``'s stdin; its stdout is copied to ``output``.

    Returns the number of bytes delivered. Raises ``ExternalCommandFailed`` when the
    program exits non-zero, ``CommandClosedInput`` when it exits 0 without reading all.
    """
    if node.type != "file":
        raise InvalidArgument(f"{node.display_name} is a {node.type}, not a file")
    return pipe_into(argv, lambda sink: dump_file(repo, node, sink), output, node.size)


def pipe_into(
    argv: Sequence[str],
    produce: Callable[[BinaryIO], int],
    output: BinaryIO | None = None,
    size: int | None = None,
) -> int:
    """Run ``argv`` with ``produce`` writing its stdin (returns the bytes it wrote)."""
    read_fd, write_fd = os.pipe()
    sink = os.fdopen(write_fd, "wb", buffering=COPY_SIZE)
    delivered = 0
    try:
        with (
            os.fdopen(read_fd, "rb") as child_stdin,
            external.stream(argv, stdin=child_stdin) as out,
        ):
            child_stdin.close()  # the child holds its own copy
            forwarder = threading.Thread(target=_copy, args=(out, output), daemon=True)
            forwarder.start()
            try:
                delivered = produce(sink)
                sink.close()
            except BrokenPipeError:
                delivered = -1
            finally:
                _close_quietly(sink)
            forwarder.join()
    finally:
        _close_quietly(sink)
    if delivered < 0:
        raise CommandClosedInput(os.path.basename(argv[0]), "?" if size is None else size)
    return delivered


def single_file(repo: Repository, snap: Snapshot, include: list[str] | None = None) -> Node:
    """The file a stream snapshot holds, or the one ``include`` names."""
    if include:
        if len(include) > 1:
            raise InvalidArgument("only one --include can be piped into a command")
        node = find_node(repo, snap, include[0])
        if node is None or node.type != "file":
            raise InvalidArgument(f"{include[0]} is not a file in snapshot {snap.short_id}")
        return node
    files = []
    for _, node in walk(repo, snap.tree, b""):
        if node.type == "file":
            files.append(node)
            if len(files) > 1:  # no need to walk a large tree to the end
                raise InvalidArgument(
                    f"snapshot {snap.short_id} holds several files: name one with --include"
                )
    if not files:
        raise InvalidArgument(f"snapshot {snap.short_id} holds no file")
    return files[0]


def _close_quietly(f: BinaryIO) -> None:
    with suppress(OSError):
        f.close()


def _copy(src: IO[bytes], dst: BinaryIO | None) -> None:
    try:
        while chunk := os.read(src.fileno(), COPY_SIZE):
            if dst is not None:
                dst.write(chunk)
                dst.flush()
    except (OSError, ValueError):
        pass  # the program was killed and its pipe closed under us
