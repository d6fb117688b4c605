"""``prune``: free what no snapshot needs (``ops.prune``), under the exclusive lock."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.context import Settings
from safehold.cli.output import count, err, human_size, out, print_json
from safehold.errors import SafeholdError
from safehold.ops.prune import (
    PrunePlan,
    PruneResult,
    parse_max_unused,
    plan_prune,
    prune,
    still_retained,
)
from safehold.repo.repository import Repository

__all__ = ["MaxUnusedOpt", "prune_command", "run_prune"]

MaxUnusedOpt = Annotated[
    str,
    typer.Option(
        "--max-unused",
        metavar="SHARE",
        help="Repack a pack when more than this share of it is unused (e.g. 10%, 0 or 100%).",
    ),
]


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    max_unused: MaxUnusedOpt = "10%",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would be done; change nothing.")
    ] = False,
) -> None:
    """Delete packs that no snapshot needs, and repack packs that are mostly unused.

    Takes the exclusive lock: backups wait or fail meanwhile (see --retry-lock).
    """
    s = settings(ctx)
    share = parse_max_unused(max_unused)
    repo = s.open_repository(load_index=False, lock="exclusive")
    run_prune(s, repo, share, dry_run)


def run_prune(s: Settings, repo: Repository, max_unused: float, dry_run: bool) -> None:
    """Plan, report, and unless ``dry_run`` carry out; shared with ``forget --prune``."""
    from safehold.sources.mysql.retention import unneeded_binlogs  # not for `safehold --help`
    from safehold.sources.postgres.retention import unneeded_wal

    plan = plan_prune(repo, max_unused)
    kept = repo.list_snapshots()
    logs = unneeded_wal(repo, kept) + unneeded_binlogs(repo, kept)  # older than any kept backup
    idle = plan.nothing_to_do and not logs
    retained, until = still_retained(repo, plan)
    result = None if dry_run or idle else prune(repo, plan, s.ensure_locked, logs)
    if s.json:
        print_json(
            {
                **_doc(plan, result, dry_run),
                "log_files_deleted": len(logs),
                "packs_retained_by_object_lock": retained,
                "retained_until": until.isoformat() if until else None,
            }
        )
    else:
        _print(plan, result, dry_run)
        if logs:
            verb = "would delete" if dry_run else "deleted"
            out().print(f"{verb} {len(logs)} archived WAL/binlog files no kept backup needs")
        if retained:
            err().print(
                f"note: {retained} of the packs deleted are under Object Lock until "
                f"{until:%Y-%m-%d %H:%M %Z}: the bucket keeps them (hidden, still billed) until "
                "then; a lifecycle rule expiring noncurrent versions frees them after "
                "(docs/stores/s3.md)",
                markup=False,
            )
    if result is not None and result.undeletable:
        raise SafeholdError(
            f"{count(len(result.undeletable), 'object')} could not be deleted (first: "
            f"{result.undeletable[0][0]}: {result.undeletable[0][1]}); the next prune retries"
        )


def _doc(plan: PrunePlan, result: PruneResult | None, dry_run: bool) -> dict[str, object]:
    return {
        "message_type": "prune",
        "dry_run": dry_run,
        "snapshots": plan.snapshots,
        "used_blobs": plan.used_blobs,
        "used_bytes": plan.used_bytes,
        "unused_bytes_kept": plan.unused_bytes,
        "packs_kept": len(plan.keep),
        "packs_repacked": len(plan.repack),
        "packs_deleted": len(plan.delete),
        "packs_unindexed": plan.unindexed_packs,
        "packs_lost_unneeded": len(plan.lost_packs),
        "bytes_repacked": plan.repack_bytes,
        "bytes_freed": plan.freed_bytes,
        "new_packs": result.new_packs if result else 0,
        "new_index": result.new_index if result else [],
        "undeletable": [{"object": k, "error": e} for k, e in result.undeletable] if result else [],
    }


def _print(plan: PrunePlan, result: PruneResult | None, dry_run: bool) -> None:
    o = out()
    o.print(
        f"{count(plan.snapshots, 'snapshot')} use {count(plan.used_blobs, 'blob')}"
        f" ({human_size(plan.used_bytes)})",
        markup=False,
    )
    o.print(
        f"packs: {len(plan.keep)} kept, {len(plan.repack)} to repack "
        f"({human_size(plan.repack_bytes)} to move), {len(plan.delete)} to delete "
        f"({plan.unindexed_packs} named by no index)",
        markup=False,
    )
    verb = "would free" if dry_run else "frees"
    o.print(f"{verb} {human_size(plan.freed_bytes)}", markup=False)
    if plan.nothing_to_do:
        o.print("nothing to prune")
    elif dry_run:
        o.print("dry run: nothing changed")
    elif result is not None:
        o.print(
            f"wrote {count(result.new_packs, 'pack')} and"
            f" {count(len(result.new_index), 'index document')};"
            f" deleted {count(result.deleted_packs, 'pack')}",
            markup=False,
        )
        for key, why in result.undeletable:
            err().print(f"could not delete {key}: {why}", markup=False)
