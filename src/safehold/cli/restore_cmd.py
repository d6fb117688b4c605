"""``restore``: a snapshot, or part of it, under a target directory."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from safehold.archive.browse import find_node
from safehold.archive.progress import Progress
from safehold.archive.restore import OVERWRITE_MODES, RestoreOptions, Restorer, RestoreStats
from safehold.archive.restore_select import Selection
from safehold.cli.app import app, settings
from safehold.cli.context import Settings
from safehold.cli.output import BarProgress, ErrorPrinter, count, human_size, out, print_json
from safehold.cli.restore_dry_run import report_dry_run
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt, resolve_snapshot
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["restore"]


@app.command()
def restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Snapshot id, short id or 'latest'.")],
    target: Annotated[
        str | None,
        typer.Option(
            "--target", "-t", help="Directory, or s3://BUCKET/PREFIX for a bucket backup."
        ),
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", "-i", help="Only this absolute path.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-e", help="Leave out a pattern.")
    ] = None,
    iinclude: Annotated[
        list[str] | None, typer.Option("--iinclude", help="--include, whatever the case.")
    ] = None,
    iexclude: Annotated[
        list[str] | None, typer.Option("--iexclude", help="--exclude, whatever the case.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-read restored files and compare.")
    ] = False,
    overwrite: Annotated[
        str, typer.Option("--overwrite", help="always, if-changed (size+mtime) or never.")
    ] = "always",
    numeric_owner: Annotated[
        bool, typer.Option("--numeric-owner", help="Restore uid/gid numbers, not names.")
    ] = False,
    no_special: Annotated[
        bool,
        typer.Option(
            "--no-special",
            help="No device nodes, setuid/setgid bits or `security.*`/`trusted.*` xattrs"
            " (for snapshots from other hosts; as root they are restored as recorded).",
        ),
    ] = False,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
    stdout_to_command: Annotated[
        str | None,
        typer.Option("--stdout-to-command", help="Pipe the snapshot's one file into this command."),
    ] = None,
) -> None:
    """Restore SNAPSHOT under --target, recreating the absolute paths it recorded."""
    s = settings(ctx)
    if (target is None) == (stdout_to_command is None):
        raise InvalidArgument("give either --target or --stdout-to-command")
    if overwrite not in OVERWRITE_MODES:  # before any work, whatever the repository holds
        raise InvalidArgument(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}")
    # a bad pattern or include is refused before any work
    Selection(include or [], exclude or [], iincludes=iinclude or [], iexcludes=iexclude or [])
    if stdout_to_command is not None and (dry_run or exclude or iinclude or iexclude):
        raise InvalidArgument("--dry-run, --exclude, --iinclude and --iexclude need --target")
    repo = s.open_repository(lock="shared")
    snap = resolve_snapshot(repo, snapshot, host, tag, path)
    if stdout_to_command is not None:  # sources/command.py; docs/sources.md
        _restore_to_command(s, repo, snap, stdout_to_command, include)
        return
    assert target is not None
    if target.startswith(("s3://", "gs://", "az://")):
        if include or verify or numeric_owner or exclude or iinclude or iexclude or dry_run:
            raise InvalidArgument(
                "--include, --exclude, --verify, --numeric-owner and --dry-run"
                " need a directory target"
            )
        _restore_to_bucket(s, repo, snap, target, overwrite)
        return
    for wanted in include or []:  # a mistyped --include must not "succeed" restoring nothing
        find_node(repo, snap, wanted)
    options = RestoreOptions(
        includes=list(include or []),
        excludes=list(exclude or []),
        iincludes=list(iinclude or []),
        iexcludes=list(iexclude or []),
        overwrite=overwrite,
        verify=verify,
        numeric_owner=numeric_owner,
        no_special=no_special,
    )
    if dry_run:
        report_dry_run(s, repo, snap, target, options)
        return
    started = time.monotonic()
    if s.json or s.quiet or not sys.stderr.isatty():
        stats = _restore(repo, options, snap, target, ErrorPrinter(s.json))
    else:
        with BarProgress("restore") as bar:
            bar.set_total(
                int(snap.summary.get("total_files_processed", 0)),
                int(snap.summary.get("total_bytes_processed", 0)),
            )
            stats = _restore(repo, options, snap, target, bar)
    duration = time.monotonic() - started
    if s.json:
        print_json(
            {
                "message_type": "summary",
                "snapshot_id": snap.id,
                "target": target,
                "total_duration": round(duration, 3),
                **vars(stats) | {"errors": len(stats.errors)},
            }
        )
    elif not s.quiet:
        out().print(
            f"restored snapshot {snap.short_id} to {target}: {count(stats.files_restored, 'file')}, "
            f"{count(stats.dirs_restored, 'dir')}, {human_size(stats.bytes_written)} in {duration:.2f}s"
            + (f"; {count(stats.files_verified, 'file')} verified" if verify else "")
            + _skipped(stats.files_skipped, overwrite)
        )
    if stats.errors:
        if not s.json:
            out().print(f"{count(len(stats.errors), 'error')} (see above)")
        raise typer.Exit(1)


def _skipped(entries: int, overwrite: str) -> str:
    """How many entries already in the target were left as they were."""
    if not entries:
        return ""
    why = "already there" if overwrite == "never" else "already there, unchanged"
    return f"; {count(entries, 'entry')} skipped ({why}: --overwrite {overwrite})"


def _restore_to_command(
    s: Settings, repo: Repository, snap: Snapshot, command: str, include: list[str] | None
) -> None:
    """The snapshot's one file (or the one --include names) into a command's stdin."""
    from safehold.sources.command import parse_command, pipe_to_command, single_file

    argv = parse_command(command)
    started = time.monotonic()
    node = single_file(repo, snap, include)
    sent = pipe_to_command(repo, node, argv, sys.stderr.buffer if s.json else sys.stdout.buffer)
    if s.json:
        print_json(
            {"message_type": "summary", "snapshot_id": snap.id, "command": argv[0]}
            | {"bytes_written": sent, "total_duration": round(time.monotonic() - started, 3)}
        )
    elif not s.quiet:
        sys.stderr.write(f"piped {human_size(sent)} of snapshot {snap.short_id} into {argv[0]}\n")


def _restore_to_bucket(
    s: Settings, repo: Repository, snap: Snapshot, target: str, overwrite: str
) -> None:
    """A bucket snapshot's objects into a bucket (sources/bucket_restore.py)."""
    from safehold.sources.bucket_client import open_bucket
    from safehold.sources.bucket_restore import restore_to_bucket

    bucket = open_bucket(target)
    started = time.monotonic()
    progress = ErrorPrinter(s.json)
    stats = restore_to_bucket(repo, snap, bucket, overwrite=overwrite, progress=progress)
    duration = time.monotonic() - started
    if s.json:
        summary = vars(stats) | {"errors": len(stats.errors)}
        print_json(
            {"message_type": "summary", "snapshot_id": snap.id, "target": bucket.location}
            | {"total_duration": round(duration, 3), **summary}
        )
    elif not s.quiet:
        out().print(
            f"restored snapshot {snap.short_id} to {bucket.location}: "
            f"{count(stats.objects_restored, 'object')}, {human_size(stats.bytes_written)} "
            f"in {duration:.2f}s"
            + (f"; {stats.objects_skipped} kept" if stats.objects_skipped else "")
        )
    if stats.errors:
        if not s.json:
            out().print(f"{count(len(stats.errors), 'error')} (see above)")
        raise typer.Exit(1)


def _restore(
    repo: Repository,
    options: RestoreOptions,
    snapshot: Snapshot,
    target: str,
    progress: Progress,
) -> RestoreStats:
    return Restorer(repo, options, progress).restore(snapshot.tree, target, snapshot)
