"""``snapshots``: list what the repository holds, with restic's filters."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import err, out, print_json
from safehold.ops.retention import GroupKey, group_snapshots, parse_group_by
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, snapshot_doc

__all__ = [
    "HostOpt",
    "PathOpt",
    "TagOpt",
    "group_title",
    "resolve_snapshot",
    "select_snapshots",
    "snapshot_doc",
]

HostOpt = Annotated[list[str] | None, typer.Option("--host", help="Only this host.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only with these tags (a,b).")]
PathOpt = Annotated[list[str] | None, typer.Option("--path", help="Only with this path.")]


def resolve_snapshot(
    repo: Repository,
    ref: str,
    host: list[str] | None = None,
    tag: list[str] | None = None,
    path: list[str] | None = None,
) -> Snapshot:
    """An id, short id or ``latest`` (the newest one matching the filters)."""
    candidates = [s for s in repo.list_snapshots() if s.matches(host or [], tag or [], path or [])]
    return find_snapshot(candidates, ref)


def select_snapshots(
    repo: Repository,
    refs: list[str],
    host: list[str] | None = None,
    tag: list[str] | None = None,
    path: list[str] | None = None,
) -> list[Snapshot]:
    """The snapshots named (ids, short ids, ``latest``; each must exist), or with no names
    every snapshot matching the filters; oldest first, each once."""
    candidates = [s for s in repo.list_snapshots() if s.matches(host or [], tag or [], path or [])]
    if not refs:
        return candidates
    chosen = {found.id: found for found in (find_snapshot(candidates, ref) for ref in refs)}
    return sorted(chosen.values(), key=lambda s: (s.datetime, s.id))


def group_title(key: GroupKey) -> str:
    """What a group's snapshots share, as a table title."""
    parts = []
    if key.hostname is not None:
        parts.append(f"host {key.hostname}")
    if key.paths is not None:
        parts.append(f"paths {', '.join(key.paths)}")
    if key.tags is not None:
        parts.append(f"tags {','.join(key.tags) or '(none)'}")
    return "snapshots of " + "; ".join(parts) if parts else "snapshots"


def newest_per_host_and_paths(snapshots: list[Snapshot], count: int) -> list[Snapshot]:
    """restic's ``--latest N``: the N newest of each host and set of paths, oldest first."""
    per_source = group_snapshots(snapshots, frozenset({"host", "paths"}))
    kept = {s.id for members in per_source.values() for s in members[-count:]}
    return [s for s in snapshots if s.id in kept]


@app.command()
def snapshots(
    ctx: typer.Context,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
    latest: Annotated[
        int | None,
        typer.Option("--latest", min=1, help="Only the N newest of each host and paths."),
    ] = None,
    compact: Annotated[
        bool, typer.Option("--compact", "-c", help="One line each: id, time, host, tags.")
    ] = False,
    group_by: Annotated[
        str,
        typer.Option("--group-by", "-g", help="List in groups of host, paths, tags (a,b)."),
    ] = "",
) -> None:
    """List snapshots, oldest first."""
    s = settings(ctx)
    grouping = parse_group_by(group_by)  # before asking for a password
    repo = s.open_repository(load_index=False)
    found = [x for x in repo.list_snapshots() if x.matches(host or [], tag or [], path or [])]
    for damage in repo.damaged_snapshots:  # skipped, but never silently
        err().print(f"warning: {damage}; skipped", markup=False)
    if latest is not None:
        found = newest_per_host_and_paths(found, latest)
    groups = group_snapshots(found, grouping)
    if s.json:
        if not grouping:
            print_json([snapshot_doc(x) for x in found])
            return
        print_json(
            [
                {
                    "group_key": {"hostname": k.hostname, "paths": k.paths, "tags": k.tags},
                    "snapshots": [snapshot_doc(x) for x in members],
                }
                for k, members in groups.items()
            ]
        )
        return
    from rich.table import Table

    for key, members in groups.items():
        columns = (
            ("ID", "Time", "Host", "Tags") if compact else ("ID", "Time", "Host", "Tags", "Paths")
        )
        table = Table(*columns, box=None, title_justify="left")
        if grouping:
            table.title = group_title(key)
        for x in members:
            row = [
                x.short_id,
                x.datetime.strftime("%Y-%m-%d %H:%M:%S"),
                x.hostname,
                ",".join(x.tags),
            ]
            table.add_row(*row, *([] if compact else ["\n".join(x.paths)]))
        out().print(table)
    out().print(f"{len(found)} snapshot{'' if len(found) == 1 else 's'}")
