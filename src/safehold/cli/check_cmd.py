"""``check``, ``repair index`` and ``repair snapshots``: find damage, rebuild a lost index
from the packs, rewrite snapshots around lost data."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import count, out, print_json
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt
from safehold.errors import InvalidArgument
from safehold.ops.check import CheckResult, DataSubset, Problem, check, parse_subset
from safehold.ops.repair import rebuild_index
from safehold.ops.repair_snapshots import (
    RepairSnapshotsResult,
    SnapshotRepair,
    repair_snapshots,
    select_snapshots,
)

__all__ = ["check_repository", "repair_index", "repair_snapshots_command"]

MAX_PATHS_SHOWN = 5

repair_app = typer.Typer(help="Repair a damaged repository.")
app.add_typer(repair_app, name="repair")


@app.command("check")
def check_repository(
    ctx: typer.Context,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Also read and verify every blob of every pack.")
    ] = False,
    read_data_subset: Annotated[
        str | None,
        typer.Option(
            "--read-data-subset",
            metavar="SPEC",
            help="Read only some packs: 'N%' of them at random, or bucket 'n/m' (1/7 … 7/7).",
        ),
    ] = None,
) -> None:
    """Check that every snapshot is complete: index, packs, snapshots and trees.

    Exits 1 when an error is found; warnings alone (e.g. unreferenced packs) exit 0.
    """
    s = settings(ctx)
    if read_data and read_data_subset is not None:
        raise InvalidArgument("give --read-data or --read-data-subset, not both")
    subset = parse_subset(read_data_subset) if read_data_subset is not None else None
    if read_data:
        subset = DataSubset()
    result = check(s.open_repository(load_index=False, lock="shared"), subset)
    if s.json:
        print_json(
            {
                "message_type": "check",
                "ok": result.ok,
                "errors": [p.to_doc() for p in result.errors],
                "warnings": [p.to_doc() for p in result.warnings],
                "packs": result.packs,
                "packs_read": len(result.packs_read),
                "blobs_read": result.blobs_read,
                "snapshots": result.snapshots,
                "trees": result.trees,
            }
        )
    else:
        for problem in [*result.errors, *result.warnings]:
            sys.stderr.write(f"{problem.severity}: {_describe(problem)}\n")
        sys.stderr.flush()
        if not s.quiet or not result.ok:
            out().print(_summary(result), markup=False)
    if not result.ok:
        raise typer.Exit(1)


@repair_app.command("index")
def repair_index(ctx: typer.Context) -> None:
    """Rebuild the index from the pack headers and replace the old index documents."""
    s = settings(ctx)
    result = rebuild_index(s.open_repository(load_index=False, lock="exclusive"))
    for pack, why in result.unreadable:
        sys.stderr.write(f"error: {pack}: left out of the index: {why}\n")
    if s.json:
        print_json(
            {
                "message_type": "repair_index",
                "packs": result.packs,
                "blobs": result.blobs,
                "index": result.new_index,
                "removed": result.removed,
                "unreadable": [{"pack": p, "error": why} for p, why in result.unreadable],
            }
        )
    elif not s.quiet:
        out().print(
            f"indexed {count(result.blobs, 'blob')} in {count(result.packs, 'pack')}"
            f" (index {(result.new_index or 'none')[:10]});"
            f" removed {count(len(result.removed), 'old index document')}",
            markup=False,
        )
    if result.unreadable:
        raise typer.Exit(1)


@repair_app.command("snapshots")
def repair_snapshots_command(
    ctx: typer.Context,
    snapshot_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[SNAPSHOT]...", show_default=False)
    ] = None,
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
    forget: Annotated[
        bool, typer.Option("--forget", help="Delete each original once its repair is saved.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would change; write nothing.")
    ] = False,
    read_data: Annotated[
        bool,
        typer.Option("--read-data", help="Also read every data blob; one that fails is lost."),
    ] = False,
) -> None:
    """Rewrite snapshots that reference lost data so that what remains restores.

    As restic: a file keeps the blobs that remain (its lost parts are cut out), a directory that cannot be read becomes empty, and a snapshot whose root tree is lost is unrepairable (exit 1; --forget deletes it). A repaired snapshot is a new one tagged 'repaired'; the original stays unless --forget. Run `safehold repair index` first after losing packs.
    """
    s = settings(ctx)
    repo = s.open_repository(lock="shared" if dry_run else "exclusive")
    chosen, unreadable = select_snapshots(
        repo, snapshot_ids or [], lambda x: x.matches(host or [], tag or [], path or [])
    )
    result = repair_snapshots(
        repo,
        chosen,
        unreadable,
        dry_run=dry_run,
        forget=forget,
        read_data=read_data,
        forget_unreadable=forget and bool(snapshot_ids),
        before_write=s.ensure_locked,
    )
    for entry in result.snapshots:
        if entry.status in ("unrepairable", "unreadable"):
            gone = "; forgotten" if entry.forgotten else ""
            sys.stderr.write(f"error: snapshot {entry.snapshot_id[:8]}: {entry.reason}{gone}\n")
    sys.stderr.flush()
    if s.json:
        print_json(
            {
                "message_type": "repair_snapshots",
                "ok": result.ok,
                "dry_run": result.dry_run,
                "trees_written": result.trees_written,
                "snapshots": [entry.to_doc() for entry in result.snapshots],
            }
        )
    elif not s.quiet:
        for entry in result.snapshots:
            out().print(_repair_line(entry, dry_run), markup=False)
        out().print(_repair_summary(result), markup=False)
    if not result.ok:
        raise typer.Exit(1)


def _repair_line(entry: SnapshotRepair, dry_run: bool) -> str:
    would = "would be " if dry_run else ""
    status = {
        "unchanged": "unchanged",
        "repaired": f"{would}repaired" + (f" as {entry.new_id[:8]}" if entry.new_id else ""),
        "already_repaired": f"already repaired as {(entry.new_id or '')[:8]}",
        "unrepairable": "unrepairable",
        "unreadable": "unreadable",
    }[entry.status]
    if entry.forgotten:
        status += f", original {would}forgotten"
    lines = [f"snapshot {entry.snapshot_id[:8]}: {status}"]
    lines += [f"  {c.kind} {c.path}: {c.detail}" for c in entry.changes]
    return "\n".join(lines)


def _repair_summary(result: RepairSnapshotsResult) -> str:
    counts = dict.fromkeys(("repaired", "unchanged", "unrepairable"), 0)
    for entry in result.snapshots:
        key = {"already_repaired": "repaired", "unreadable": "unrepairable"}.get(
            entry.status, entry.status
        )
        counts[key] += 1
    forgotten = sum(entry.forgotten for entry in result.snapshots)
    verb = "would write" if result.dry_run else "wrote"
    return (
        f"{count(len(result.snapshots), 'snapshot')}: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + f"; {verb} {count(result.trees_written, 'tree')}"
        + (f"; {forgotten} originals {'to forget' if result.dry_run else 'forgotten'}")
    )


def _describe(problem: Problem) -> str:
    text = f"{problem.subject}: {problem.message}"
    if problem.snapshots:
        shown = ", ".join(problem.paths[:MAX_PATHS_SHOWN])
        more = len(problem.paths) - MAX_PATHS_SHOWN
        text += (
            f"; affects {count(len(problem.snapshots), 'snapshot')}"
            f" ({', '.join(sid[:8] for sid in problem.snapshots)}): {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    return text


def _summary(result: CheckResult) -> str:
    read = (
        f", read {count(result.blobs_read, 'blob')} in {count(len(result.packs_read), 'pack')}"
        if result.packs_read
        else ""
    )
    verdict = "no errors" if result.ok else count(len(result.errors), "error")
    return (
        f"checked {count(result.snapshots, 'snapshot')}, {count(result.trees, 'tree')},"
        f" {count(result.packs, 'pack')}{read}: {verdict}, {count(len(result.warnings), 'warning')}"
    )
