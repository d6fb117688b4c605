"""``restore --dry-run``: print what the restore would write, overwrite, keep and delete."""

from __future__ import annotations

import os
from collections import Counter

import typer

from safehold.archive.restore import RestoreOptions
from safehold.archive.restore_plan import plan_restore
from safehold.cli.context import Settings
from safehold.cli.output import human_size, out, print_json
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["report_dry_run"]


def report_dry_run(
    s: Settings, repo: Repository, snap: Snapshot, target: str, options: RestoreOptions
) -> None:
    """One line per entry (JSON lines with --json), then the totals; exit 1 if the restore
    would fail on some entry."""
    counts: Counter[str] = Counter()
    size = 0
    for entry in plan_restore(repo, snap.tree, target, options):
        counts[entry.action] += 1
        size += entry.size
        item = os.fsdecode(entry.path)
        if s.json:
            print_json(
                {"message_type": "verbose_status", "action": entry.action, "item": item}
                | {"type": entry.node.type, "size": entry.size, "reason": entry.reason}
            )
        elif not s.quiet:
            reason = f" ({entry.reason})" if entry.reason else ""
            out().print(f"{entry.action:<9} {item}{reason}", markup=False)
    if s.json:
        print_json(
            {"message_type": "summary", "dry_run": True, "snapshot_id": snap.id, "target": target}
            | {a: counts[a] for a in ("new", "overwrite", "keep", "delete", "error")}
            | {"bytes_to_write": size}
        )
    elif not s.quiet:
        out().print(
            f"dry run of snapshot {snap.short_id} to {target}: {counts['new']} new, "
            f"{counts['overwrite']} overwritten, {counts['keep']} kept, {counts['delete']} "
            f"deleted, {counts['error']} refused; {human_size(size)} to write; nothing written"
        )
    if counts["error"]:
        raise typer.Exit(1)
