"""``recover``: bring a whole service back at one moment (dr/recovery/)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config
from safehold.errors import InvalidArgument

if TYPE_CHECKING:
    from safehold.dr.recovery.plan import RecoveryPlan
    from safehold.dr.recovery.report import RecoveryReport, StepRecord

__all__ = ["recover", "step_observer"]


@app.command("recover")
def recover(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service of the policy to bring back.")],
    config: ConfigOpt = None,
    to_time: Annotated[
        str | None, typer.Option("--to-time", metavar="TIME", help="Every source as of TIME.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="The newest moment every source can reach.")
    ] = False,
    at_cut: Annotated[
        str | None,
        typer.Option("--at-cut", metavar="ID", help="A consistent cut (`safehold cuts`)."),
    ] = None,
    target_root: Annotated[
        str | None,
        typer.Option(
            "--target-root", metavar="DIR", help="A sandbox: every path under DIR, free ports."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Restore into targets that are not empty; discard an unfinished run."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing.")
    ] = False,
    promote_as_primary: Annotated[
        bool,
        typer.Option(
            "--promote-as-primary",
            help="The recovered databases are the new primary: they archive into the repository.",
        ),
    ] = False,
    safehold_command: Annotated[
        str | None,
        typer.Option("--safehold-command", help="How the postgres user runs safehold."),
    ] = None,
    state_file: Annotated[
        str | None, typer.Option("--state-file", help="Where progress is kept for a resume.")
    ] = None,
    tune_replay: Annotated[
        bool,
        typer.Option(
            "--tune-replay/--no-tune-replay",
            help="PostgreSQL replays WAL with large buffers and rare restartpoints, then"
            " restarts with its own settings (default); or replays with its own settings.",
        ),
    ] = True,
) -> None:
    """Restore every source of SERVICE in parallel to one moment, start it, check its
    health, and report the achieved RTO and the data-loss window.

    Exit codes: 0 healthy; 1 refused (nothing written) or failed; 6 back but a health
    check failed; 10 no copy of the repository readable; 130 interrupted (run the same
    command again to resume).
    """
    from safehold.dr.recovery.plan import Moment
    from safehold.dr.recovery.session import RecoveryRequest, prepare

    s = settings(ctx)
    given = [x for x in (to_time, at_cut) if x is not None]
    if len(given) + int(latest) != 1:
        raise InvalidArgument("give exactly one of --to-time, --latest, --at-cut")
    if to_time is not None:
        from safehold.repo.snapshot import format_time, parse_time

        moment = Moment("time", format_time(parse_time(to_time)))
    else:
        moment = Moment("cut", at_cut) if at_cut is not None else Moment("latest")
    _path, policy = load_config(config)
    request = RecoveryRequest(
        service,
        moment,
        target_root=target_root,
        force=force,
        primary=promote_as_primary,
        safehold_command=safehold_command,
        state_path=state_file,
        tune_replay=tune_replay,
    )
    recovery = prepare(policy, request, step_observer(s.json, s.quiet))
    if dry_run or s.json:
        if dry_run and not s.json:
            out().print(render_plan(recovery.plan), markup=False, end="")
        else:
            print_json(recovery.plan.to_doc())
        if dry_run:
            return
    elif not s.quiet:
        out().print(render_plan(recovery.plan), markup=False, end="")
    report = recovery.run()
    if s.json:
        print_json(report.to_doc())
    elif not s.quiet or report.outcome != "recovered":
        out().print(render_summary(report), markup=False, end="")
    error = recovery.error()
    if error is not None:
        raise error


def step_observer(as_json: bool, quiet: bool) -> Any:
    """Each step as it ends (text), or as it begins and ends (JSON lines); drills too."""
    lock = threading.Lock()

    def observe(record: StepRecord) -> None:
        with lock:
            if as_json:
                print_json(record.to_doc())
            elif not quiet and record.outcome is not None:
                out().print(_step_line(record), markup=False)

    return observe


def _step_line(r: StepRecord) -> str:
    who = f" {r.source}" if r.source else ""
    return f"{r.step}{who}: {r.outcome} in {r.seconds:.2f}s: {r.detail}"


def render_plan(plan: RecoveryPlan) -> str:
    lines = [
        f"recover {plan.service} to {plan.point} ({plan.moment.text()}) from {plan.location}",
    ]
    if plan.copy_note:
        lines.append(f"  NOTE: {plan.copy_note}")
    for sp in plan.sources:
        where = sp.target + (f" port {sp.port}" if sp.port else "")
        log = f", WAL to {sp.log_target}" if sp.log_target else ""
        lines.append(
            f"  {sp.name} ({sp.kind}): snapshot {sp.snapshot_id[:8]} as of {sp.point}{log} -> {where}"
        )
        if sp.replay_settings:
            tuned = ", ".join(f"{k}={v}" for k, v in sp.replay_settings.items())
            lines.append(f"    replays with {tuned}, then restarts with its own settings")
    for command in plan.start:
        lines.append(f"  start: {command}")
    for check in plan.checks:
        lines.append(f"  check {check.label}: {check.kind} {check.spec}")
    if plan.primary:
        lines.append("  the recovered databases become the new primary (they archive WAL)")
    return "\n".join(lines) + "\n"


def render_summary(report: RecoveryReport) -> str:
    doc = report.to_doc()
    lines = [f"{doc['service']}: {doc['outcome']}" + (f": {doc['error']}" if doc["error"] else "")]
    if doc["rto_seconds"] is not None:
        lines.append(f"  achieved RTO {doc['rto_seconds']:.1f}s (start to healthy)")
    if doc["data_loss_seconds"] is not None:
        lines.append(
            f"  data-loss window {doc['data_loss_seconds']:.1f}s (recovery point {doc['point']},"
            f" newest data {doc['newest_data']})"
        )
    if doc["skew_seconds"] is not None:
        lines.append(f"  skew between sources {doc['skew_seconds']:.3f}s")
    for src in doc["sources"]:
        reached = src["reached"] or "not reached"
        lines.append(f"  {src['name']}: {reached} at {src['target']}")
    return "\n".join(lines) + "\n"
