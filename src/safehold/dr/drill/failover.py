"""A hot standby's failover drill (``dr/standby/drill.py``) as a drill of the history: its
write downtime is the achieved RTO, its lost acknowledged commits the data check (and an
RPO of 0 when none was lost), the old primary's return as a replica a second check; both
objectives judged as for a restore drill, the report stored with the others."""

from __future__ import annotations

from datetime import UTC, datetime

from safehold.dr.drill.report import CheckResult, DrillReport
from safehold.dr.drill.run import judge
from safehold.dr.standby.drill import FailoverDrillReport
from safehold.repo.snapshot import parse_time

__all__ = ["from_failover"]


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
