"""A hot standby's failover drill (``dr/standby/drill.py``) as a drill of the history: its
write downtime is the achieved RTO, its lost acknowledged commits the data check (and an
RPO of 0 when none was lost), the old primary's return as a replica a second check; both
objectives judged as for a restore drill, the report stored with the others. An
application pair's drill (``dr/standby/app_drill.py``) likewise: the time until the
passive answered is the achieved RTO, no data is at stake (no RPO), its checks are the
passive answering and the active coming back."""

from __future__ import annotations

from datetime import UTC, datetime

from safehold.dr.drill.report import CheckResult, DrillReport
from safehold.dr.drill.run import judge
from safehold.dr.standby.app_drill import AppFailoverReport
from safehold.dr.standby.drill import FailoverDrillReport
from safehold.repo.snapshot import parse_time

__all__ = ["from_app_failover", "from_failover"]


def from_failover(
    failover: FailoverDrillReport, objectives: dict[str, float | None]
) -> DrillReport:
    """The drill report of a failover drill, judged against ``objectives`` (seconds)."""
    started = parse_time(failover.started_at)
    lost = failover.commits_missing
    report = DrillReport(
        id=started.strftime("%Y%m%dT%H%M%S%fZ"),
        service=failover.service,
        started=failover.started_at,
        point_spec=f"failover:{failover.mode}",
        kind="failover",
        moment=f"{failover.mode} of {failover.old_primary}",
        point=failover.new_primary,
        objectives=objectives,
        rto_seconds=failover.write_downtime_seconds,
        rpo_seconds=0.0 if not lost else None,
    )
    report.checks = [
        CheckResult(
            "no acknowledged commit lost",
            "failover",
            None,
            not lost,
            f"{failover.commits_acknowledged} commits acknowledged, {len(lost)} missing on"
            f" {failover.new_primary}" + (f" (first {lost[:5]})" if lost else ""),
        ),
        CheckResult(
            "old primary rejoined",
            "failover",
            None,
            failover.old_primary_rejoined,
            f"{failover.old_primary} back as a streaming replica after {failover.rejoin_seconds} s"
            if failover.old_primary_rejoined
            else f"{failover.old_primary} not back: {'; '.join(failover.notes)}",
        ),
    ]
    report.steps = [
        {
            "step": "failover",
            "source": failover.old_primary,
            "started": failover.started_at,
            "seconds": failover.write_downtime_seconds,
            "outcome": "ok" if failover.new_primary else "failed",
            "detail": f"writes through HAProxy on {failover.new_primary} after"
            f" {failover.write_downtime_seconds} s (longest gap"
            f" {failover.longest_write_gap_seconds} s)",
        }
    ]
    report.outcome = judge(report)
    report.ended = datetime.now(UTC).isoformat()
    return report


def from_app_failover(
    failover: AppFailoverReport, objectives: dict[str, float | None]
) -> DrillReport:
    """The drill report of an application pair's failover drill, judged against
    ``objectives`` (seconds; the pair's failover_objective replaces the RTO)."""
    started = parse_time(failover.started_at)
    rto = failover.objective_seconds if failover.objective_seconds else objectives.get("rto")
    failed = f"{failover.failed_requests} of {failover.requests} requests failed" + (
        f" (first: {failover.errors[0]})" if failover.errors else ""
    )
    report = DrillReport(
        id=started.strftime("%Y%m%dT%H%M%S%fZ"),
        service=failover.service,
        started=failover.started_at,
        point_spec=f"failover:app-{failover.mode}",
        kind="failover",
        moment=f"{failover.mode} of {failover.active}",
        point=failover.serving,
        objectives={"rto": rto, "rpo": None},
        rto_seconds=failover.failover_seconds,
    )
    report.checks = [
        CheckResult(
            "the passive answered",
            "failover",
            None,
            failover.serving is not None,
            (
                f"{failover.serving} answered through HAProxy after {failover.failover_seconds} s"
                if failover.serving
                else f"no passive answered: {'; '.join(failover.notes)}"
            )
            + f"; {failed}",
            figures={"failed_requests": failover.failed_requests, "requests": failover.requests},
        ),
        CheckResult(
            "the active back",
            "failover",
            None,
            failover.active_back,
            f"{failover.active} answered again {failover.back_seconds} s after it was started"
            if failover.active_back
            else f"{failover.active} not back: {'; '.join(failover.notes)}",
        ),
    ]
    report.steps = [
        {
            "step": "failover",
            "source": failover.active,
            "started": failover.started_at,
            "seconds": failover.failover_seconds,
            "outcome": "ok" if failover.serving else "failed",
            "detail": f"{failover.stopped_by}; {failover.serving} answered after"
            f" {failover.failover_seconds} s (longest gap {failover.longest_gap_seconds} s);"
            f" {failed}",
        }
    ]
    report.outcome = judge(report)
    report.ended = datetime.now(UTC).isoformat()
    return report
