"""``replicate``: copy the repository to a replica (another region), or report its lag."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import datetime
from typing import Annotated

import typer

from safehold.archive.progress import Progress
from safehold.cli.app import app, settings
from safehold.cli.context import Settings
from safehold.cli.output import BarProgress, ErrorPrinter, count, human_size, out, print_json
from safehold.errors import InvalidArgument
from safehold.ops.replicate import (
    COPY_ORDER,
    DEFAULT_CONNECTIONS,
    PrefixStats,
    ReplicationResult,
    replicate,
)
from safehold.ops.replicate_logs import LogCopyResult, LogFollower
from safehold.ops.replicate_status import (
    PrefixDiff,
    ReplicaStatus,
    SnapshotRef,
    replication_status,
)
from safehold.repo.lock import acquire
from safehold.repo.repository import Repository
from safehold.storage import ObjectStore

__all__ = ["replicate_command"]

EXIT_INCOMPLETE = 3
NAMES_SHOWN = 20


@app.command("replicate")
def replicate_command(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="LOCATION",
            help="The replica: a path or s3://BUCKET/PREFIX?endpoint=…&region=…",
        ),
    ],
    delete: Annotated[
        bool,
        typer.Option(
            "--delete", help="Also delete from the replica what the repository no longer has."
        ),
    ] = False,
    status: Annotated[
        bool,
        typer.Option("--status", help="Only report lag and missing objects; copy nothing."),
    ] = False,
    logs_only: Annotated[
        bool,
        typer.Option(
            "--logs-only",
            help="Copy only archived logs (WAL, binlogs) the replica lacks: cheap, for"
            " keeping a replica's recovery point close between full runs.",
        ),
    ] = False,
    follow: Annotated[
        str | None,
        typer.Option(
            "--follow",
            metavar="INTERVAL",
            help="With --logs-only: keep copying new logs every INTERVAL (e.g. 5s, 1m)"
            " until stopped (SIGTERM, Ctrl-C).",
        ),
    ] = None,
) -> None:
    """Copy to the replica every object it lacks, verified, in a crash-safe order.

    Keys and config first, then packs, WAL, indexes, and snapshots last, so the replica never shows a snapshot it cannot restore. Re-running copies only what is still missing; nothing is deleted from the replica unless --delete is given.

    With --logs-only only archived logs are copied (one listing of the primary's wal/ and binlog/); with --follow INTERVAL that repeats until stopped, which is what the daemon runs for a replica's `logs` setting.

    Exits 3 when some objects could not be copied (each is named on stderr). The global --connections (default 8 here) sets how many objects are copied at once.
    """
    s = settings(ctx)
    interval = _follow_interval(follow, logs_only, status)
    if s.connections is None:  # both stores' connection pools fit the copy's threads
        s.connections = DEFAULT_CONNECTIONS
    connections = s.connections
    repo = s.open_repository(load_index=False, lock="shared")
    target = s.open_store(to)
    if status:
        _print_status(replication_status(repo, target, NAMES_SHOWN), s)
        return
    if logs_only:
        if not _follow_logs(LogFollower(repo, target, connections), interval, s):
            raise typer.Exit(EXIT_INCOMPLETE)
        return
    if delete:
        _lock_replica(repo, target, s)
    result = _run(repo, target, connections, delete, s)
    _report(result, s)
    if not result.ok:
        raise typer.Exit(EXIT_INCOMPLETE)


def _follow_interval(follow: str | None, logs_only: bool, status: bool) -> float | None:
    if status and (logs_only or follow is not None):
        raise InvalidArgument("--status reports only: it takes neither --logs-only nor --follow")
    if follow is None:
        return None
    if not logs_only:
        raise InvalidArgument("--follow goes with --logs-only")
    from safehold.dr.fields import parse_interval  # pydantic: only when asked

    try:
        seconds = parse_interval(follow).total_seconds()
    except ValueError:
        raise InvalidArgument(
            f"--follow: invalid interval {follow!r}: use a number with a unit s, m or h,"
            " e.g. 5s, 1m"
        ) from None
    if seconds <= 0:
        raise InvalidArgument("--follow: the interval must be longer than zero")
    return seconds


def _follow_logs(follower: LogFollower, interval: float | None, s: Settings) -> bool:
    """Poll once, or every ``interval`` seconds until SIGTERM or Ctrl-C; False when a poll
    failed to copy something (the loop stops then: the daemon restarts it with backoff
    and records the failure, so it reaches the alerts)."""
    stop = threading.Event()
    if interval is not None:
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    while True:
        result = follower.poll()
        _report_logs(result, follower.target.location, s, always=interval is None)
        if not result.ok or interval is None:
            return result.ok
        if stop.wait(interval):
            return True


def _report_logs(result: LogCopyResult, target: str, s: Settings, always: bool) -> None:
    """One line (or JSON object) per poll that copied or failed; idle polls of --follow
    are silent."""
    for error in result.errors:
        if s.json:
            print_json({"message_type": "error", "item": error.key, "error": error.message})
        else:
            sys.stderr.write(f"error: {error.key}: {error.message}\n")
    sys.stderr.flush()
    if not (always or result.copied or result.errors):
        return
    if s.json:
        print_json({"message_type": "replicate_logs", "target": target, **result.to_doc()})
    elif not s.quiet:
        out().print(
            f"copied {count(result.copied, 'log file')} ({human_size(result.copied_bytes)})"
            f" to {target}",
            markup=False,
        )


def _lock_replica(repo: Repository, target: ObjectStore, s: Settings) -> None:
    """Deleting packs from a replica that someone restores from needs its exclusive lock."""
    if target.exists():
        replica = Repository(target, repo.key, repo.config, repo.key_id)
        s.resources.enter_context(acquire(replica, True, retry_for=s.retry_lock))


def _run(
    repo: Repository, target: ObjectStore, connections: int, delete: bool, s: Settings
) -> ReplicationResult:
    if s.json or s.quiet or not sys.stderr.isatty():
        progress: Progress = ErrorPrinter(s.json)
        return replicate(repo, target, connections=connections, delete=delete, progress=progress)
    with BarProgress("replicate") as bar:
        return replicate(repo, target, connections=connections, delete=delete, progress=bar)


def _report(result: ReplicationResult, s: Settings) -> None:
    if s.json:
        print_json(
            {
                "message_type": "replicate",
                "source": result.source,
                "target": result.target,
                "created_target": result.created_target,
                "prefixes": {g: st.to_doc() for g, st in _ordered(result.prefixes)},
                "objects_copied": result.copied,
                "bytes_copied": result.copied_bytes,
                "objects_deleted": result.deleted,
                "seconds": round(result.seconds, 3),
                "mb_per_s": round(result.mb_per_s, 1),
                "errors": [e.to_doc() for e in result.errors],
                "conflicts": result.conflicts,
                "deletions_skipped": result.deletions_skipped,
                "ok": result.ok,
            }
        )
        return
    for key in result.conflicts:
        sys.stderr.write(f"error: {key}: differs in size on the replica; left as it is\n")
    if result.deletions_skipped:
        sys.stderr.write("warning: --delete skipped: the copy had errors\n")
    held = sum(st.held_back for st in result.prefixes.values())
    if held:
        sys.stderr.write(
            f"warning: {count(held, 'object')} held back (an earlier phase failed); run again\n"
        )
    sys.stderr.flush()
    if s.quiet and result.ok:
        return
    skipped = sum(st.skipped for st in result.prefixes.values())
    line = (
        f"copied {count(result.copied, 'object')} ({human_size(result.copied_bytes)})"
        f" in {result.seconds:.1f} s ({result.mb_per_s:.1f} MB/s), {skipped} already there"
    )
    if result.deleted:
        line += f", deleted {result.deleted}"
    if result.errors:
        line += f"; {count(len(result.errors), 'error')}"
    out().print(line, markup=False)


def _ordered(groups: dict[str, PrefixStats]) -> list[tuple[str, PrefixStats]]:
    return sorted(groups.items(), key=lambda item: COPY_ORDER.index(item[0]))


def _snapshot_doc(ref: SnapshotRef | None) -> dict[str, str] | None:
    return None if ref is None else ref.to_doc()


def _print_status(st: ReplicaStatus, s: Settings) -> None:
    if s.json:
        print_json(
            {
                "message_type": "replicate_status",
                "source": st.source,
                "target": st.target,
                "target_exists": st.target_exists,
                "primary_newest": _snapshot_doc(st.primary_newest),
                "replica_newest": _snapshot_doc(st.replica_newest),
                "lag_seconds": st.lag_seconds,
                "behind": st.behind.to_doc() if st.behind is not None else None,
                "logs": [db.to_doc() for db in st.logs],
                "in_sync": st.in_sync,
                "missing": {g: d.to_doc() for g, d in st.missing.items()},
                "missing_by_kind": st.missing_by_kind(),
                "extra": {g: d.to_doc() for g, d in st.extra.items()},
                "differing": list(st.differing),
                "unreadable": list(st.unreadable),
            }
        )
        return
    console = out()
    console.print(f"primary: {_describe(st.primary_newest)}", markup=False)
    console.print(f"replica: {_describe(st.replica_newest)}", markup=False)
    for db in st.logs:
        label = "PostgreSQL" if db.kind == "postgres" else "MariaDB"
        console.print(
            f"{label} {db.name}: the primary restores to {_moment(db.primary_newest)},"
            f" the replica to {_moment(db.replica_newest)}",
            markup=False,
        )
    if st.lag_seconds is None:
        lag = "unknown (the replica does not exist yet)"
    else:
        lag = _ago(st.lag_seconds)
        if st.behind is not None:
            lag += f" (since {st.behind.since.isoformat()}: {st.behind.reason})"
    console.print(f"lag: {lag}", markup=False)
    console.print(_diff_line("missing on the replica", st.missing), markup=False)
    console.print(_diff_line("only on the replica (--delete removes)", st.extra), markup=False)
    for key in st.differing:
        console.print(f"differs in size: {key}", markup=False)
    for text in st.unreadable:
        console.print(f"unreadable on the replica: {text}", markup=False)


def _describe(ref: SnapshotRef | None) -> str:
    return "no snapshots" if ref is None else f"newest snapshot {ref.id[:8]} at {ref.time}"


def _moment(moment: datetime | None) -> str:
    return "nothing" if moment is None else moment.isoformat()


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.1f} h ({seconds:.0f} s)"


def _diff_line(title: str, diffs: dict[str, PrefixDiff]) -> str:
    if not diffs:
        return f"{title}: nothing"
    parts = [f"{d.kind} {d.count} ({human_size(d.bytes)})" for d in diffs.values()]
    return f"{title}: " + ", ".join(parts)
