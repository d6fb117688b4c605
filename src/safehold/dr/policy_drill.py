"""The ``[services.NAME.drill]`` table: when the daemon runs a recovery drill of the service,
which point it recovers, how old the last drill may be, and the service's own checks.

A service without the table is never drilled and never reported as undrilled. The checks
are the recovery table's kinds (``sql``, ``http``, ``tcp``, ``command``) with the same
placeholders; ``drill_problems`` reports what needs the service's sources with file and
line, as ``recovery_problems`` does. docs/drills.md describes every key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from safehold.dr.fields import CronOrOff, PolicyModel, PositiveInterval, fail, format_interval
from safehold.dr.policy_recovery import HealthCheck, check_problems, source_kinds

__all__ = ["POINTS", "Drill", "describe_drill", "drill_problems", "parse_point"]

POINTS = ("latest", "random")
WEEKLY = "@weekly"


def parse_point(value: str) -> str:
    """``latest``, ``random``, ``cut:ID`` or a time (RFC 3339), as given; else ValueError."""
    from safehold.errors import InvalidArgument
    from safehold.repo.snapshot import parse_time

    if value in POINTS or (value.startswith("cut:") and len(value) > 4):
        return value
    try:
        parse_time(value)
    except (ValueError, InvalidArgument):
        raise ValueError(
            f"expected latest, random, cut:ID or a time (RFC 3339), got {value!r}"
        ) from None
    return value


def _point(value: Any) -> str:
    if not isinstance(value, str):
        raise fail("point", f"expected latest, random, cut:ID or a time, got {value!r}")
    try:
        return parse_point(value)
    except ValueError as exc:
        raise fail("point", str(exc)) from None


Point = Annotated[str, BeforeValidator(_point)]


class Drill(PolicyModel):
    """``safehold drill``'s and the daemon's instructions for one service."""

    schedule: CronOrOff = WEEKLY  # when the daemon drills ("off": only by hand)
    point: Point = "random"  # which point a scheduled drill recovers
    max_age: PositiveInterval = timedelta(days=8)  # older last success: a problem in status
    checks: list[HealthCheck] = Field(default_factory=list)


def describe_drill(drill: Drill) -> dict[str, Any]:
    """The table as ``safehold plan`` shows it."""
    checks = []
    for i, check in enumerate(drill.checks):
        checks.append(
            {"name": check.label(i), "kind": check.kind, "spec": getattr(check, check.kind)}
        )
    return {
        "schedule": drill.schedule,
        "point": drill.point,
        "max_age": format_interval(drill.max_age),
        "checks": checks,
    }


def drill_problems(service: str, document: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Checks of the drill table naming an unknown source or SQL on a non-PostgreSQL one."""
    drill = document.get("drill")
    if not isinstance(drill, dict):
        return []
    return check_problems(
        ("services", service, "drill"), drill.get("checks"), source_kinds(document)
    )
