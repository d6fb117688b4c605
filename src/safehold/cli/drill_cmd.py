"""``drill`` and ``drills``: recovery drills into a sandbox and their reports (dr/drill/)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config
from safehold.errors import InvalidArgument

if TYPE_CHECKING:
    from safehold.dr.drill.report import DrillReport
    from safehold.dr.drill.run import Drill
    from safehold.dr.policy import Policy
    from safehold.repo.repository import Repository

__all__ = ["drill", "drills_list", "drills_show"]

drills_app = typer.Typer(help="The recorded drills: list them, show one (JSON or HTML).")
app.add_typer(drills_app, name="drills")


@app.command("drill")
def drill(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service of the policy to drill.")],
    config: ConfigOpt = None,
    point: Annotated[
        str,
        typer.Option(
            "--point", metavar="POINT", help="latest, random (within the window), a TIME, cut:ID."
        ),
    ] = "latest",
    keep: Annotated[
        str | None,
        typer.Option(
            "--keep", metavar="DURATION", help="Keep the sandbox running this long (e.g. 2h)."
        ),
    ] = None,
    sandbox: Annotated[
        str | None,
        typer.Option("--sandbox", metavar="DIR", help="Make the sandbox in DIR (default: TMPDIR)."),
    ] = None,
    failover: Annotated[
        str | None,
        typer.Option(
            "--failover",
            metavar="MODE",
            help="A failover drill of the hot standby instead: kill or switchover.",
        ),
    ] = None,
    app: Annotated[
        bool,
        typer.Option(
            "--app",
            help="With --failover: the application pair's drill (the default when the"
            " standby has no PostgreSQL nodes).",
        ),
    ] = False,
) -> None:
    """Recover SERVICE into a sandbox (temporary directories, free ports), check its data,
    measure the achieved RTO and RPO against the objectives, store the report (state
    directory and repository), tear down.

    Exit codes: 0 passed; 1 refused (nothing written); 7 a data check failed (or the
    restore hit damaged data); 8 the data is right but an objective was missed; 130
    interrupted. With --failover, the hot standby's failover drill instead (docs/standby.md):
    its write downtime against the RTO, no acknowledged commit lost as its data check;
    for an application pair (--app, or a standby without PostgreSQL nodes) the time until
    the passive answers against the pair's failover_objective or the RTO.
    """
    from safehold.cli.recover_cmd import step_observer
    from safehold.dr.drill.run import Drill, DrillRequest
    from safehold.dr.fields import parse_interval
    from safehold.dr.policy_drill import parse_point
    from safehold.service.paths import state_dir

    s = settings(ctx)
    try:
        parse_point(point)
        hold = parse_interval(keep).total_seconds() if keep else None
    except ValueError as exc:
        raise InvalidArgument(str(exc).splitlines()[0]) from None
    path, policy = load_config(config)
    if service not in policy.services:
        from safehold.dr.jobs import require_service

        require_service(policy, service)
    state = str(state_dir(policy, path))
    if failover is not None:
        _failover(policy, path, service, failover, state, s.json, s.quiet, app)
        return
    run = Drill(
        policy, DrillRequest(service, state, point, sandbox), step_observer(s.json, s.quiet)
    )
    try:
        report = run.run()
        if hold is None:
            run.teardown()
        _store(run, state)
        if s.json:
            print_json(report.to_doc())
        elif not s.quiet or report.outcome != "passed":
            out().print(render_report(report), markup=False, end="")
        if hold is not None and report.sandbox:
            _hold(report, hold, s.json)
    finally:  # after --keep, or on an interrupt or an error: nothing is left running
        run.teardown()
    error = run.error()
    if error is not None:
        raise error


def _failover(
    policy: Policy,
    path: str,
    service: str,
    mode: str,
    state: str,
    as_json: bool,
    quiet: bool,
    app: bool,
) -> None:
    """The hot standby's failover drill (``standby failover-drill``), kept in the drill
    history (state directory and repository) and judged against the objectives."""
    from safehold.cli.standby_cmd import run_app_failover, run_failover, wants_app_drill
    from safehold.dr.drill.failover import from_app_failover, from_failover
    from safehold.dr.drill.run import outcome_error
    from safehold.dr.drill.store import save_local, store_in_repository
    from safehold.dr.plan import resolve_objectives
    from safehold.dr.status import open_policy_repository

    resolved = resolve_objectives(policy, service)
    objectives = {k: resolved[k].value.total_seconds() for k in ("rto", "rpo")}
    if wants_app_drill(policy, service, app):
        app_report, _saved = run_app_failover(policy, path, service, mode, 120.0)
        report = from_app_failover(app_report, objectives)
    else:
        failover, _saved = run_failover(
            policy, path, service, mode, "user=postgres dbname=postgres", 120.0
        )
        report = from_failover(failover, objectives)
    save_local(report, state)
    repository = policy.repositories[policy.repository_of(service)]
    store_in_repository(report, open_policy_repository(repository))
    if as_json:
        print_json(report.to_doc())
    elif not quiet or report.outcome != "passed":
        out().print(render_report(report), markup=False, end="")
    error = outcome_error(report)
    if error is not None:
        raise error


def _store(run: Drill, state: str) -> None:
    """The report into the state directory and the repository (a repository that cannot
    be written is said on stderr: the drill's own outcome stands)."""
    from safehold.dr.drill.store import save_local, store_in_repository
    from safehold.errors import SafeholdError

    report = run.report
    save_local(report, state)
    if run.repo is None:
        return
    try:
        store_in_repository(report, run.repo)
    except (SafeholdError, OSError) as exc:
        print(f"safehold: the report could not be stored in the repository: {exc}", file=sys.stderr)


def _hold(report: DrillReport, seconds: float, as_json: bool) -> None:
    """Keep the sandbox for manual validation, saying how to reach it."""
    if not as_json:
        out().print(
            f"sandbox kept for {seconds:.0f}s at {report.sandbox['root']} (Ctrl-C tears it down):",
            markup=False,
        )
        for name, src in report.sandbox["sources"].items():
            port = f" port {src['port']} on {src['host']}" if src["port"] else ""
            out().print(f"  {name} ({src['kind']}): {src['target']}{port}", markup=False)
    time.sleep(seconds)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"


def render_report(report: DrillReport) -> str:
    """The summary lines of one drill."""
    lines = [
        f"drill {report.id} of {report.service}: {report.outcome}"
        + (f": {report.error}" if report.error else ""),
        f"  point {report.point_spec} -> {report.point}",
        f"  achieved RTO {_seconds(report.rto_seconds)} (objective"
        f" {_seconds(report.objectives.get('rto'))}), achieved RPO"
        f" {_seconds(report.rpo_seconds)} (objective {_seconds(report.objectives.get('rpo'))})",
    ]
    for c in report.checks:
        lines.append(f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
    lines += [f"  {done}" for done in report.teardown]
    return "\n".join(lines) + "\n"


# -- drills -------------------------------------------------------------------------------


def _repositories(policy: Policy, service: str | None) -> list[Repository]:
    from safehold.dr.jobs import require_service
    from safehold.dr.status import open_policy_repository

    if service is not None:
        require_service(policy, service)
        names = [policy.repository_of(service)]
    else:
        names = sorted({policy.repository_of(name) for name in policy.services})
    return [open_policy_repository(policy.repositories[name]) for name in names]


@drills_app.callback(invoke_without_command=True)
def drills_list(
    ctx: typer.Context,
    config: ConfigOpt = None,
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service's drills.")
    ] = None,
) -> None:
    """List the drills stored in the repository (oldest first): outcome, RTO, RPO."""
    if ctx.invoked_subcommand is not None:
        return
    from safehold.dr.drill.store import stored_reports

    s = settings(ctx)
    _path, policy = load_config(config)
    reports = [r for repo in _repositories(policy, service) for r in stored_reports(repo, service)]
    if s.json:
        print_json([r.to_doc() for r in reports])
        return
    for r in reports:
        out().print(
            f"{r.id}  {r.service:<12} {r.outcome:<16} RTO {_seconds(r.rto_seconds):>8}"
            f"  RPO {_seconds(r.rpo_seconds):>8}  point {r.point}",
            markup=False,
        )


@drills_app.command("show")
def drills_show(
    ctx: typer.Context,
    report_id: Annotated[str, typer.Argument(metavar="ID", help="A drill's id (or its prefix).")],
    config: ConfigOpt = None,
    as_html: Annotated[bool, typer.Option("--html", help="The standalone HTML report.")] = False,
) -> None:
    """Show one stored drill: its summary, as JSON with --json, or as HTML."""
    from safehold.dr.drill.report import render_html
    from safehold.dr.drill.store import find_report
    from safehold.errors import NotFound

    s = settings(ctx)
    _path, policy = load_config(config)
    for repo in _repositories(policy, None):
        try:
            report, history = find_report(repo, report_id)
        except NotFound:
            continue
        if as_html:
            sys.stdout.write(render_html(report, history))
        elif s.json:
            print_json(report.to_doc())
        else:
            out().print(render_report(report), markup=False, end="")
        return
    raise NotFound(f"reports/*/{report_id} (no drill report matches)")
