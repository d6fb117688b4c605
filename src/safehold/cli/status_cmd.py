"""``status``: is every service within its recovery point objective right now?"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config

if TYPE_CHECKING:
    from safehold.dr.policy import Policy
    from safehold.dr.status import ProtectionStatus, ReplicaStatus, ServiceStatus, SourceStatus
    from safehold.service.history import JobHistory

__all__ = ["EXIT_OUTSIDE_OBJECTIVES", "render_status", "status"]

EXIT_OUTSIDE_OBJECTIVES = 5
SOURCE_COLUMNS = (
    "source",
    "kind",
    "last backup",
    "recovery point",
    "exposure / rpo",
    "next run",
    "last job / problem",
)


@app.command("status")
def status(
    ctx: typer.Context,
    config: ConfigOpt = None,
    no_replicas: Annotated[
        bool, typer.Option("--no-replicas", help="Do not read the replicas (no lag).")
    ] = False,
) -> None:
    """Show, per service and source, the last backup, the recovery point, the RPO exposure
    against the objective, the next run and the last job; and each replica's lag.

    Exit codes: 0 every service is within its objectives; 5 at least one is not (a source
    never backed up, or its exposure above the RPO: it can gate a deployment or feed a
    monitoring check); 1 the policy is not valid (one line per problem). With --quiet
    nothing is printed: the exit code alone answers.
    """
    from safehold.dr.status import evaluate

    s = settings(ctx)
    path, policy = load_config(config)
    history = _open_history(policy, path)
    try:
        from safehold.service.paths import state_dir

        result = evaluate(
            policy,
            datetime.now(UTC),
            history,
            replicas=not no_replicas,
            state_dir=str(state_dir(policy, path)),
        )
    finally:
        if history is not None:
            history.close()
    if s.json:
        print_json({**result.to_dict(), "config": path})
    elif not s.quiet:  # --quiet: the exit code alone, for `status --quiet || page-someone`
        out().print(render_status(result, policy.daemon.timezone), markup=False, end="")
    if not result.within_objectives:
        raise typer.Exit(EXIT_OUTSIDE_OBJECTIVES)


def _open_history(policy: Policy, config: str) -> JobHistory | None:
    """The daemon's history, read-only, when the daemon has made one."""
    from safehold.service.history import JobHistory
    from safehold.service.paths import HISTORY_FILE, state_dir

    path = state_dir(policy, config) / HISTORY_FILE
    return JobHistory(path, readonly=True) if path.exists() else None


# -- text -------------------------------------------------------------------------------


def _when(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def _span(value: timedelta | None) -> str:
    from safehold.dr.fields import format_interval

    return format_interval(value) if value is not None else "-"


def _columns(rows: list[tuple[str, ...]], indent: str) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (
            indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _last_job(source: SourceStatus, tz: ZoneInfo) -> str:
    parts = []
    if source.problem is not None:
        parts.append(f"PROBLEM: {source.problem}")
    if source.last_job is not None:
        parts.append(
            f"{source.last_job} {source.last_job_outcome} {_when(source.last_job_ended, tz)}"
        )
    if source.failing_since is not None:
        parts.append(f"failing since {_when(source.failing_since, tz)}: {source.last_error}")
    return "; ".join(parts) or "-"


def _source_row(source: SourceStatus, tz: ZoneInfo) -> tuple[str, ...]:
    point = _when(source.recovery_point, tz)
    if source.recovery_point_from is not None:
        known = ", last known" if source.recovery_point_last_known else ""
        point += f" ({source.recovery_point_from}{known})"
    verdict = "ok" if source.within_objective else "OUTSIDE"
    exposure = f"{_span(source.exposure)} / {_span(source.rpo)} {verdict}"
    if source.pending:
        exposure = f"first backup under way / {_span(source.rpo)} pending"
    elif source.recovery_point is None:
        exposure = f"never backed up / {_span(source.rpo)} OUTSIDE"
    return (
        source.source,
        source.kind,
        _when(source.last_backup, tz),
        point,
        exposure,
        _when(source.next_run, tz),
        _last_job(source, tz),
    )


def _service_lines(service: ServiceStatus, tz: ZoneInfo) -> list[str]:
    verdict = "within objectives" if service.within_objectives else "OUTSIDE objectives"
    head = (
        f"service {service.name}: {verdict} (rpo {_span(service.rpo)}, rto {_span(service.rto)},"
        f" worst exposure {_span(service.exposure) if service.exposure is not None else 'unknown'})"
    )
    rows = [SOURCE_COLUMNS, *(_source_row(source, tz) for source in service.sources)]
    return ["", head, *_columns(rows, "  "), *_drill_lines(service), *_standby_lines(service)]


def _drill_lines(service: ServiceStatus) -> list[str]:
    """The service's drills: the last one, or the problem (docs/drills.md)."""
    if service.drill is None:
        return []
    if service.drill_problem is not None:
        return [f"  drill: PROBLEM: {service.drill_problem}"]
    last = service.drill["last"]
    return [
        f"  drill: last {last['id']} passed, RTO {_seconds(last['rto_seconds'])},"
        f" RPO {_seconds(last['rpo_seconds'])}"
    ]


def _standby_lines(service: ServiceStatus) -> list[str]:
    """The service's hot standby: its primary, or its problems (docs/standby.md)."""
    standby = service.standby
    if standby is None:
        return []
    if standby.problems:
        return [f"  standby: PROBLEM: {problem}" for problem in standby.problems]
    replicas = [n.name for n in standby.nodes if n.name != standby.primary]
    lines = [f"  standby: primary {standby.primary}, streaming to {', '.join(replicas)}"]
    if standby.app is None:
        return lines
    passives = [i.name for i in standby.app.instances if i.role == "passive"]
    app = f"  standby: {standby.app.serving} serves, {', '.join(passives)} stand by"
    return [*(lines if standby.nodes else []), app]


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}s"


def _replica_row(replica: ReplicaStatus, tz: ZoneInfo) -> tuple[str, ...]:
    return (
        replica.repository,
        replica.location,
        _span(replica.lag),
        _when(replica.newest_primary, tz),
        _when(replica.newest_replica, tz),
        _missing(replica),
        f"PROBLEM: {replica.problem}" if replica.problem else "-",
    )


def _missing(replica: ReplicaStatus) -> str:
    """``WAL 1, packs 2``: what the replica lacks, by kind."""
    if replica.missing_objects is None:
        return "-"
    return ", ".join(f"{kind} {n}" for kind, n in replica.missing.items()) or "0"


def render_status(result: ProtectionStatus, timezone: str = "UTC") -> str:
    """The status as text: a verdict line, a table per service, then the replicas."""
    tz = ZoneInfo(timezone)
    outside = [s.name for s in result.services if not s.within_objectives]
    verdict = (
        f"OUTSIDE objectives: {', '.join(outside)}"
        if outside
        else "every service within its objectives"
    )
    lines = [f"status at {_when(result.now, tz)} ({timezone}): {verdict}"]
    for service in result.services:
        lines += _service_lines(service, tz)
    if result.replicas:
        head = ("replica of", "location", "lag", "newest primary", "newest replica", "missing")
        rows = [(*head, "problem"), *(_replica_row(r, tz) for r in result.replicas)]
        lines += ["", *_columns(rows, "")]
        lines += [
            f"  {r.location} behind since {r.behind['since']}: {r.behind['reason']}"
            for r in result.replicas
            if r.behind is not None
        ]
    return "\n".join(lines) + "\n"
