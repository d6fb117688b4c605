"""``forget``: remove snapshots by id or by a retention policy (``ops.retention``)."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import count, err, out, print_json
from safehold.cli.prune_cmd import MaxUnusedOpt, run_prune
from safehold.cli.snapshots_cmd import (
    HostOpt,
    PathOpt,
    TagOpt,
    group_title,
    resolve_snapshot,
    snapshot_doc,
)
from safehold.errors import InvalidArgument
from safehold.ops.prune import parse_max_unused
from safehold.ops.retention import (
    Decision,
    GroupKey,
    GroupResult,
    Policy,
    apply_policy_grouped,
    parse_count,
    parse_duration,
    parse_group_by,
    refuse_empty,
)

__all__ = ["forget"]


def _count_opt(name: str, what: str) -> object:
    return typer.Option(f"--keep-{name}", metavar="N", help=f"Keep {what} (-1 or unlimited: all).")


LastOpt = Annotated[str | None, _count_opt("last", "the N newest snapshots")]
HourlyOpt = Annotated[str | None, _count_opt("hourly", "the newest of each of the last N hours")]
DailyOpt = Annotated[str | None, _count_opt("daily", "the newest of each of the last N days")]
WeeklyOpt = Annotated[str | None, _count_opt("weekly", "the newest of each of the last N weeks")]
MonthlyOpt = Annotated[str | None, _count_opt("monthly", "the newest of each of the last N months")]
YearlyOpt = Annotated[str | None, _count_opt("yearly", "the newest of each of the last N years")]
WithinOpt = Annotated[
    str | None,
    typer.Option(
        "--keep-within",
        metavar="DURATION",
        help="Keep snapshots newer than the newest minus DURATION (e.g. 30d, 2w, 1y6m, 12h).",
    ),
]
KeepTagOpt = Annotated[
    list[str] | None,
    typer.Option("--keep-tag", metavar="TAGS", help="Keep snapshots with all these tags (a,b)."),
]
GroupByOpt = Annotated[
    str,
    typer.Option("--group-by", help="Apply the policy per group of host, paths, tags."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would be removed; remove nothing.")
]


@app.command()
def forget(
    ctx: typer.Context,
    snapshot_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[SNAPSHOT]...", show_default=False)
    ] = None,
    keep_last: LastOpt = None,
    keep_hourly: HourlyOpt = None,
    keep_daily: DailyOpt = None,
    keep_weekly: WeeklyOpt = None,
    keep_monthly: MonthlyOpt = None,
    keep_yearly: YearlyOpt = None,
    keep_within: WithinOpt = None,
    keep_tag: KeepTagOpt = None,
    group_by: GroupByOpt = "host,paths",
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
    dry_run: DryRunOpt = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Run prune afterwards, under the exclusive lock.")
    ] = False,
    max_unused: MaxUnusedOpt = "10%",
) -> None:
    """Remove the given snapshots, or those a --keep-* policy does not keep.

    The policy applies to each group (--group-by) separately. Only the snapshot records are removed: the data they referenced stays in the repository until `safehold prune` (or --prune) frees it.
    """
    s = settings(ctx)
    policy = Policy(
        last=_count(keep_last),
        hourly=_count(keep_hourly),
        daily=_count(keep_daily),
        weekly=_count(keep_weekly),
        monthly=_count(keep_monthly),
        yearly=_count(keep_yearly),
        within=parse_duration(keep_within) if keep_within is not None else None,
        tags=tuple(tuple(t for t in group.split(",") if t) for group in keep_tag or []),
    )
    if snapshot_ids and not policy.is_empty():
        raise InvalidArgument("give snapshot ids or a --keep-* policy, not both")
    if not snapshot_ids:
        refuse_empty(policy)  # before asking for a password
    grouping = parse_group_by(group_by)
    share = parse_max_unused(max_unused)
    repo = s.open_repository(load_index=False, lock="exclusive" if prune else "shared")
    if snapshot_ids:
        chosen = {
            x.id: x for x in (resolve_snapshot(repo, ref, host, tag, path) for ref in snapshot_ids)
        }
        results = [GroupResult(GroupKey(), [Decision(x, False, ()) for x in chosen.values()])]
    else:
        found = [x for x in repo.list_snapshots() if x.matches(host or [], tag or [], path or [])]
        results = apply_policy_grouped(found, policy, grouping)
    for damage in repo.damaged_snapshots:  # skipped, never decided on
        err().print(f"warning: {damage}; skipped", markup=False)
    if not dry_run:
        for result in results:
            for decision in result.remove:
                repo.delete_snapshot(decision.snapshot.id)
    if s.json:
        print_json([_group_doc(r, by_id=bool(snapshot_ids)) for r in results])
    else:
        _print_results(results, dry_run, prune)
    if prune:
        run_prune(s, repo, share, dry_run)


def _count(text: str | None) -> int:
    return 0 if text is None else parse_count(text)


def _group_doc(result: GroupResult, by_id: bool) -> dict[str, object]:
    key = result.key
    group = None if by_id else {"hostname": key.hostname, "paths": key.paths, "tags": key.tags}
    return {
        "group_key": group,
        "keep": [{**snapshot_doc(d.snapshot), "reasons": list(d.reasons)} for d in result.keep],
        "remove": [snapshot_doc(d.snapshot) for d in result.remove],
    }


def _print_results(results: list[GroupResult], dry_run: bool, pruning: bool) -> None:
    from rich.table import Table

    for result in results:
        table = Table(
            "ID", "Time", "Host", "Tags", "Action", "Reasons", box=None, title_justify="left"
        )
        table.title = group_title(result.key)
        for d in sorted(result.decisions, key=lambda d: (d.snapshot.datetime, d.snapshot.id)):
            table.add_row(
                d.snapshot.short_id,
                d.snapshot.datetime.strftime("%Y-%m-%d %H:%M:%S"),
                d.snapshot.hostname,
                ",".join(d.snapshot.tags),
                "keep" if d.keep else "remove",
                ", ".join(d.reasons),
            )
        out().print(table)
        out().print()
    removed = sum(len(r.remove) for r in results)
    if dry_run:
        out().print(f"would remove {count(removed, 'snapshot')} (dry run: nothing removed)")
    elif not pruning:
        out().print(f"removed {count(removed, 'snapshot')}; `safehold prune` frees their data")
    else:
        out().print(f"removed {count(removed, 'snapshot')}; pruning")
