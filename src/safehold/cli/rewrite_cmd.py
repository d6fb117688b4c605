"""``rewrite``: cut files out of existing snapshots (restic's ``rewrite --exclude``)."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.archive.excludes import Excluder, read_exclude_file
from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt, select_snapshots
from safehold.errors import InvalidArgument
from safehold.ops.rewrite import RewriteResult, rewrite_snapshots

__all__ = ["rewrite"]

PatternsOpt = list[str] | None


@app.command()
def rewrite(
    ctx: typer.Context,
    snapshot_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SNAPSHOT]...", help="Snapshots to rewrite; all matching the filters if none."
        ),
    ] = None,
    exclude: Annotated[
        PatternsOpt, typer.Option("--exclude", "-e", help="Cut out entries matching a pattern.")
    ] = None,
    iexclude: Annotated[
        PatternsOpt, typer.Option("--iexclude", help="--exclude, whatever the case.")
    ] = None,
    exclude_file: Annotated[
        PatternsOpt, typer.Option("--exclude-file", help="Read patterns from a file.")
    ] = None,
    forget: Annotated[
        bool, typer.Option("--forget", help="Delete each original once its rewrite is saved.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would be cut; write nothing.")
    ] = False,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
) -> None:
    """Write new snapshots without the entries matching --exclude (tag: rewrite)."""
    s = settings(ctx)
    patterns = list(exclude or [])
    for name in exclude_file or []:
        patterns.extend(read_exclude_file(name))
    if not patterns and not iexclude:
        raise InvalidArgument("nothing to do: give --exclude, --iexclude or --exclude-file")
    excluder = Excluder(patterns, ignore_case=iexclude or ())
    repo = s.open_repository(lock="exclusive" if forget and not dry_run else "shared")
    chosen = select_snapshots(repo, snapshot_ids or [], host, tag, path)
    result = rewrite_snapshots(
        repo, chosen, excluder, dry_run=dry_run, forget=forget, before_write=s.ensure_locked
    )
    _report(result, s.json, s.quiet)


def _report(result: RewriteResult, as_json: bool, quiet: bool) -> None:
    changed = [r for r in result.snapshots if r.status != "unchanged"]
    if as_json:
        print_json(
            {"message_type": "rewrite", "dry_run": result.dry_run}
            | {"rewritten": len(changed), "trees_written": result.trees_written}
            | {"snapshots": [r.to_doc() for r in result.snapshots]}
        )
        return
    if quiet:
        return
    would = "would be " if result.dry_run else ""
    for r in changed:
        new = f" → {r.new_id[:8]}" if r.new_id else ""
        already = " (already rewritten)" if r.status == "already_rewritten" else ""
        forgot = "; original forgotten" if r.forgotten and not result.dry_run else ""
        out().print(f"snapshot {r.snapshot.short_id}{new}: {would}rewritten{already}{forgot}")
        for removed in r.removed:
            out().print(f"  cut {removed}", markup=False)
    verb = "would write" if result.dry_run else "wrote"
    out().print(
        f"{len(changed)} of {len(result.snapshots)} snapshot"
        f"{'' if len(result.snapshots) == 1 else 's'} {would}rewritten; "
        f"{verb} {result.trees_written} tree{'' if result.trees_written == 1 else 's'}"
        + ("; dry run: nothing written" if result.dry_run else "")
    )
