"""``restore``: a snapshot, or part of it, under a target directory."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from safehold.archive.browse import find_node
from safehold.archive.progress import Progress
from safehold.archive.restore import OVERWRITE_MODES, RestoreOptions, Restorer, RestoreStats
from safehold.cli.app import app, settings
from safehold.cli.output import BarProgress, ErrorPrinter, human_size, out, print_json
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt, resolve_snapshot
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository

__all__ = ["restore"]


@app.command()
def restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Snapshot id, short id or 'latest'.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Directory to restore into.")],
    include: Annotated[
        list[str] | None, typer.Option("--include", "-i", help="Only this absolute path.")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-read restored files and compare.")
    ] = False,
    overwrite: Annotated[
        str, typer.Option("--overwrite", help="always, if-changed (size+mtime) or never.")
    ] = "always",
    numeric_owner: Annotated[
        bool, typer.Option("--numeric-owner", help="Restore uid/gid numbers, not names.")
    ] = False,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
) -> None:
    """Restore SNAPSHOT under --target, recreating the absolute paths it recorded."""
    s = settings(ctx)
    if overwrite not in OVERWRITE_MODES:  # before any work, whatever the repository holds
        raise InvalidArgument(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}")
    repo = s.open_repository(lock="shared")
    snap = resolve_snapshot(repo, snapshot, host, tag, path)
    for wanted in include or []:  # a mistyped --include must not "succeed" restoring nothing
        find_node(repo, snap, wanted)
    options = RestoreOptions(
        includes=list(include or []),
        overwrite=overwrite,
        verify=verify,
        numeric_owner=numeric_owner,
    )
    started = time.monotonic()
    if s.json or s.quiet or not sys.stderr.isatty():
        stats = _restore(repo, options, snap.tree, target, ErrorPrinter(s.json))
    else:
        with BarProgress("restore") as bar:
            bar.set_total(
                int(snap.summary.get("total_files_processed", 0)),
                int(snap.summary.get("total_bytes_processed", 0)),
            )
            stats = _restore(repo, options, snap.tree, target, bar)
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
            f"restored snapshot {snap.short_id} to {target}: {stats.files_restored} files, "
            f"{stats.dirs_restored} dirs, {human_size(stats.bytes_written)} in {duration:.2f}s"
            + (f"; {stats.files_verified} files verified" if verify else "")
        )
    if stats.errors:
        if not s.json:
            out().print(f"{len(stats.errors)} errors (see above)")
        raise typer.Exit(1)


def _restore(
    repo: Repository, options: RestoreOptions, tree: str, target: str, progress: Progress
) -> RestoreStats:
    return Restorer(repo, options, progress).restore(tree, target)
