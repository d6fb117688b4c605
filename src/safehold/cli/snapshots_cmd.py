"""``snapshots``: list what the repository holds, with restic's filters."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import err, out, print_json
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot

__all__ = ["HostOpt", "PathOpt", "TagOpt", "resolve_snapshot", "snapshot_doc"]

HostOpt = Annotated[list[str] | None, typer.Option("--host", help="Only this host.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only with these tags (a,b).")]
PathOpt = Annotated[list[str] | None, typer.Option("--path", help="Only with this path.")]


def snapshot_doc(s: Snapshot) -> dict[str, object]:
    return {
        "id": s.id,
        "short_id": s.short_id,
        "time": s.time,
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths,
        "tags": s.tags,
        "parent": s.parent,
        "tree": s.tree,
        "program_version": s.program_version,
        "summary": s.summary,
        "source": s.source,
        "original": s.original,
    }


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


@app.command()
def snapshots(
    ctx: typer.Context, host: HostOpt = None, tag: TagOpt = None, path: PathOpt = None
) -> None:
    """List snapshots, oldest first."""
    s = settings(ctx)
    repo = s.open_repository(load_index=False)
    found = [x for x in repo.list_snapshots() if x.matches(host or [], tag or [], path or [])]
    for damage in repo.damaged_snapshots:  # skipped, but never silently
        err().print(f"warning: {damage}; skipped", markup=False)
    if s.json:
        print_json([snapshot_doc(x) for x in found])
        return
    from rich.table import Table

    table = Table("ID", "Time", "Host", "Tags", "Paths", box=None)
    for x in found:
        table.add_row(
            x.short_id,
            x.datetime.strftime("%Y-%m-%d %H:%M:%S"),
            x.hostname,
            ",".join(x.tags),
            "\n".join(x.paths),
        )
    out().print(table)
    out().print(f"{len(found)} snapshots")
