"""``plan``: validate safehold.toml and show what will run when, and where each value came from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config
from safehold.errors import InvalidArgument

if TYPE_CHECKING:
    from safehold.dr.plan import Plan, PlannedSchedule, Setting

__all__ = ["plan", "render_plan"]

DEFAULT_COUNT = 3


@app.command("plan")
def plan(
    ctx: typer.Context,
    config: ConfigOpt = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="Next run times per schedule.")
    ] = DEFAULT_COUNT,
    now: Annotated[
        str | None,
        typer.Option("--now", metavar="TIME", help="Plan as if it were TIME (ISO 8601)."),
    ] = None,
) -> None:
    """Validate the policy file and print, per service and source, its schedules with their
    next run times, its retention and objectives, each with where it came from.

    Exits 1 with one line per problem (file:line: key: what was expected) when the policy
    is not valid.
    """
    from safehold.dr.plan import build_plan, plan_document

    s = settings(ctx)
    moment = _parse_now(now)
    path, policy = load_config(config)
    result = build_plan(policy, moment, count)
    if s.json:
        print_json({**plan_document(result), "config": path})
    else:
        out().print(render_plan(result, path), markup=False, end="")


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"invalid --now {text!r}: use ISO 8601, e.g. 2026-11-26T15:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- text -------------------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def _settings(values: dict[str, Setting]) -> str:
    return ", ".join(f"{key} {v.text()} [{v.origin}]" for key, v in values.items()) or "none"


def _schedule_lines(item: PlannedSchedule, indent: str, width: int) -> list[str]:
    import shlex

    origin = f"[{item.origin}]"
    head = f"{indent}{item.name:<{width}}  {item.spec:<14} {origin:<20}"
    if item.next:
        head += " next " + ", ".join(_when(t) for t in item.next)
    lines = [head.rstrip()]
    if item.argv is not None:
        lines.append(f"{indent}{'':<{width}}  runs: safehold {shlex.join(item.argv)}")
    if item.note is not None:
        lines.append(f"{indent}{'':<{width}}  {item.note}")
    return lines


def _count(items: Sequence[object], one: str, many: str | None = None) -> str:
    return f"{len(items)} {one if len(items) == 1 else many or one + 's'}"


def _recovery_lines(recovery: dict[str, Any]) -> list[str]:
    """The [services.NAME.recovery] table: where each source comes back, start, checks."""
    lines = [f"  recovery    cuts {recovery['cuts']}, timeout {recovery['timeout']}"]
    for name, target in recovery["sources"].items():
        where = ", ".join(f"{k} {v}" for k, v in target.items()) or "where it was"
        lines.append(f"    {name} -> {where}")
    lines += [f"    start: {command}" for command in recovery["start"]]
    for check in recovery["checks"]:
        detail = ", ".join(f"{k} {v}" for k, v in check.items() if k != "name" and v is not None)
        lines.append(f"    check {check['name']}: {detail}")
    return lines


def _drill_lines(drill: dict[str, Any]) -> list[str]:
    """The [services.NAME.drill] table: when the daemon drills, which point, its checks."""
    lines = [
        f"  drill       schedule {drill['schedule']}, point {drill['point']},"
        f" max_age {drill['max_age']}"
    ]
    lines += [f"    check {c['name']}: {c['kind']} {c['spec']}" for c in drill["checks"]]
    return lines


def render_plan(plan: Plan, path: str) -> str:
    """The plan as text: repositories, then services and their sources, then the daemon."""
    lines = [
        f"policy {path}: {_count(plan.services, 'service')},"
        f" {_count(plan.repositories, 'repository', 'repositories')};"
        f" times in {plan.timezone}, from {_when(plan.now)}",
        "[brackets]: where each value came from",
    ]
    for repo in plan.repositories:
        kind, value = repo.password_source
        lines += ["", f"repository {repo.name}: {repo.location} (password from {kind} {value})"]
        for replica in repo.replicas:
            lines.append(f"  replica {replica.location}")
            lines += _schedule_lines(replica.schedule, "    ", 9)
            lines += _schedule_lines(replica.logs, "    ", 9)
        lines += _schedule_lines(repo.check, "  ", 9)
        lines += _schedule_lines(repo.retention, "  ", 9)
    for service in plan.services:
        lines += [
            "",
            f"service {service.name}: repository {service.repository.value}"
            f" [{service.repository.origin}]",
            f"  retention   {_settings(service.retention)}",
            f"  objectives  {_settings(service.objectives)}",
            *_recovery_lines(service.recovery),
        ]
        for source in service.sources:
            lines.append(f"  source {source.name} ({source.kind})")
            lines.append(f"    options  {_settings(source.options)}")
            width = max(len(x.name) for x in source.schedules) if source.schedules else 0
            for item in source.schedules:
                lines += _schedule_lines(item, "    ", width)
            if not source.schedules:
                lines.append("    no schedule: every schedule is off")
        if service.standby is not None:
            from safehold.dr.standby.policy import standby_lines

            lines += standby_lines(service.standby, service.name)
        if service.drill is not None:
            lines += _drill_lines(service.drill)
    lines += ["", f"daemon: {_settings(plan.daemon)}", ""]
    return "\n".join(lines)
