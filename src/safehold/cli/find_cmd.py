"""``find``: which snapshots hold a file, and where (restic's ``find``)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from safehold.archive.excludes import Excluder
from safehold.archive.find import Finder
from safehold.cli.app import app, settings
from safehold.cli.browse_cmd import entry_doc, long_line
from safehold.cli.output import out, print_json
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt, select_snapshots

__all__ = ["find"]


@app.command()
def find(
    ctx: typer.Context,
    patterns: Annotated[
        list[str],
        typer.Argument(
            help="Glob on the name ('*.conf'), or on the path when it has a '/' ('/etc/**')."
        ),
    ],
    snapshot: Annotated[
        list[str] | None,
        typer.Option("--snapshot", "-s", help="Search only this snapshot (repeatable)."),
    ] = None,
    ignore_case: Annotated[
        bool, typer.Option("--ignore-case", "-i", help="Match whatever the case.")
    ] = False,
    long: Annotated[bool, typer.Option("--long", "-l", help="Mode, owner, size, time.")] = False,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
) -> None:
    """Find files and directories matching PATTERNS in every snapshot (or those chosen)."""
    s = settings(ctx)
    matcher = Excluder([] if ignore_case else patterns, ignore_case=patterns if ignore_case else ())
    repo = s.open_repository(lock="shared")
    finder = Finder(repo, matcher)
    results = []
    for snap in select_snapshots(repo, snapshot or [], host, tag, path):
        matches = finder.find(snap)
        if not matches:
            continue
        results.append((snap, matches))
        if s.json:
            continue
        out().print(
            f"Found {len(matches)} match{'es' if len(matches) != 1 else ''} in snapshot"
            f" {snap.short_id}"
            f" from {snap.datetime.strftime('%Y-%m-%d %H:%M:%S')}",
            markup=False,
        )
        for entry_path, node in matches:
            out().print(
                long_line(entry_path, node) if long else os.fsdecode(entry_path), markup=False
            )
        out().print("")
    if s.json:
        print_json(
            [
                {
                    "snapshot": snap.id,
                    "hits": len(matches),
                    "matches": [entry_doc(p, n) for p, n in matches],
                }
                for snap, matches in results
            ]
        )
    elif not results and not s.quiet:
        out().print("no matches")
