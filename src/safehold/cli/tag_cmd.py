"""``tag``: add, remove or set the tags of snapshots (restic's ``tag``)."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt, select_snapshots
from safehold.ops.tag import TagEdit, retag

__all__ = ["tag"]

TagListOpt = list[str] | None


def _tags(groups: TagListOpt) -> list[str]:
    """``--add a,b --add c`` → a, b, c (restic's tag lists)."""
    return [t for group in groups or [] for t in group.split(",") if t]


@app.command()
def tag(
    ctx: typer.Context,
    snapshot_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Snapshots to change; every one matching the filters if none."),
    ] = None,
    add: Annotated[TagListOpt, typer.Option("--add", help="Add tags (a,b; repeatable).")] = None,
    remove: Annotated[TagListOpt, typer.Option("--remove", help="Remove tags.")] = None,
    set_: Annotated[
        TagListOpt, typer.Option("--set", help="Replace all tags ('' removes them all).")
    ] = None,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
) -> None:
    """Change the tags of snapshots: each gets a new id, the old document is deleted."""
    s = settings(ctx)
    edit = TagEdit(_tags(add), _tags(remove), None if set_ is None else _tags(set_))
    repo = s.open_repository(load_index=False, lock="shared")
    chosen = select_snapshots(repo, snapshot_ids or [], host, tag, path)
    changes = retag(repo, chosen, edit, before_write=s.ensure_locked)
    changed = sum(1 for c in changes if c.new_id is not None)
    if s.json:
        print_json(
            {"message_type": "tag", "changed": changed, "snapshots": [c.to_doc() for c in changes]}
        )
        return
    if s.quiet:
        return
    for c in changes:
        if c.new_id is not None:
            out().print(
                f"snapshot {c.old.short_id} → {c.new_id[:8]}: tags {','.join(c.tags) or '(none)'}",
                markup=False,
            )
    out().print(
        f"changed the tags of {changed} of {len(changes)} snapshot{'s' if len(changes) != 1 else ''}"
    )
