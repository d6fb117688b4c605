"""A service's drills as ``safehold status`` sees them: the last drill, the last passing
one, and the problem there is when the last drill did not pass or none passed within the
drill table's ``max_age`` (read from the state directory's reports). A hot standby's
failover drills are judged apart: the last one that did not pass is a problem of the
standby (``failover_problem``), until a later one passes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from safehold.dr.drill.report import PASSED
from safehold.dr.drill.store import local_reports
from safehold.dr.fields import format_interval
from safehold.dr.policy import Policy
from safehold.repo.snapshot import parse_time

__all__ = ["drill_status", "failover_problem"]


def drill_status(
    policy: Policy, service: str, state_dir: str, now: datetime
) -> tuple[dict[str, Any] | None, str | None]:
    """(what status shows of the service's drills, its problem or None); (None, None) for
    a service without a drill table."""
    drill = policy.services[service].drill
    if drill is None:
        return None, None
    reports = [r for r in local_reports(state_dir, service) if r.kind == "restore"]
    last = reports[-1] if reports else None
    passed = [r for r in reports if r.outcome == PASSED]
    success = parse_time(passed[-1].ended or passed[-1].started) if passed else None
    doc: dict[str, Any] = {
        "schedule": drill.schedule,
        "max_age_seconds": drill.max_age.total_seconds(),
        "last_success": success.isoformat() if success else None,
        "last": None,
    }
    if last is not None:
        doc["last"] = {
            "id": last.id,
            "outcome": last.outcome,
            "ended": last.ended,
            "rto_seconds": last.rto_seconds,
            "rpo_seconds": last.rpo_seconds,
            "error": last.error,
        }
    problem = None
    if last is not None and last.outcome != PASSED:
        problem = f"the last drill ({last.id}) {last.outcome}: {last.error}"
    elif success is None:
        problem = "never drilled (safehold drill, or the daemon on the drill schedule)"
    elif now - success > drill.max_age:
        problem = (
            f"no passing drill for {format_interval(now - success)}"
            f" (max_age {format_interval(drill.max_age)})"
        )
    return doc, problem


def failover_problem(state_dir: str, service: str) -> str | None:
    """The service's last failover drill, when it did not pass (its objective missed, a
    check failed); None when it passed or none ran."""
    failovers = [r for r in local_reports(state_dir, service) if r.kind == "failover"]
    last = failovers[-1] if failovers else None
    if last is None or last.outcome == PASSED:
        return None
    return f"the last failover drill ({last.id}) {last.outcome}: {last.error}"
