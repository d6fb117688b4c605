"""Schedules: cron expressions (through croniter) and the next run times of a policy.

``next_runs`` is the one answer to "when does each job run next", for ``safehold plan``
now and for the daemon later, so that the two cannot disagree. Times are nominal: the
daemon adds its jitter on top.

Expressions have 5 fields (minute hour day-of-month month day-of-week), 6 with a leading
seconds field (for tests and tight schedules), or are one of croniter's aliases
(``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``). They are evaluated in
the policy's time zone (``[daemon] timezone``, UTC by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

if TYPE_CHECKING:
    from safehold.dr.policy import Policy

__all__ = [
    "ALIASES",
    "LOG_REPLICATION",
    "JobId",
    "cron_error",
    "cron_previous",
    "cron_times",
    "next_runs",
    "scheduled_jobs",
]

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
_PROBE = datetime(2026, 1, 1, tzinfo=UTC)


def _seconds_first(expression: str) -> bool:
    return len(expression.split()) == 6


_EQUAL_RANGE = re.compile(r"(\w+)-(\w+)(?:/\d+)?")


def _standard(expression: str) -> str:
    """``expression`` with each range whose ends are equal (``5-5``, ``1-1/3``) written as
    its one value.

    croniter (7.0) reads an equal range as the whole field, on purpose (``5-5 * * * *``
    fires every minute), where cron reads it as that one value; a policy means cron's.
    """
    fields = []
    for field in expression.split():
        parts = []
        for part in field.split(","):
            match = _EQUAL_RANGE.fullmatch(part)
            same = match is not None and match[1].lower() == match[2].lower()
            parts.append(match[1] if match is not None and same else part)
        fields.append(",".join(parts))
    return " ".join(fields)


def _iterator(expression: str, start: datetime) -> croniter:
    text = _standard(expression.strip())
    return croniter(text, start, second_at_beginning=_seconds_first(text))


def cron_error(expression: str) -> str | None:
    """Why ``expression`` is not a usable cron expression, or None when it is."""
    text = expression.strip()
    if text.startswith("@"):
        if text not in ALIASES:
            return f"unknown cron alias {text!r} (known: {', '.join(ALIASES)})"
        return None
    fields = text.split()
    if len(fields) not in (5, 6):
        return (
            f"a cron expression has 5 fields (minute hour day month weekday), or 6 with"
            f" seconds first; {text!r} has {len(fields)}"
        )
    try:
        _iterator(text, _PROBE).get_next(datetime)
    except CroniterBadDateError:
        return f"{text!r} never fires"
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        detail = str(exc).replace(f"[{text}] ", "")
        return f"invalid cron expression {text!r}: {detail}"
    return None


def cron_times(expression: str, after: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    """The ``count`` times at which ``expression`` fires strictly after ``after``.

    ``after`` must carry a time zone; the expression is read in ``tz`` and the times come
    back in ``tz``.
    """
    if after.tzinfo is None:
        raise ValueError("cron_times needs a time-zone-aware datetime")
    it = _iterator(expression, after.astimezone(ZoneInfo(tz)))
    return [it.get_next(datetime) for _ in range(count)]


def cron_previous(expression: str, at: datetime, tz: str = "UTC") -> datetime:
    """The newest time at which ``expression`` fires at or before ``at`` (the slot a daemon
    that was down at that moment has missed)."""
    if at.tzinfo is None:
        raise ValueError("cron_previous needs a time-zone-aware datetime")
    nudged = at.astimezone(ZoneInfo(tz)) + timedelta(microseconds=1)
    return _iterator(expression, nudged).get_prev(datetime)


LOG_REPLICATION = "replicate-logs"  # the JobId action of a replica's log follower


@dataclass(frozen=True, order=True)
class JobId:
    """One scheduled job of a policy.

    ``action`` is ``backup`` (``target`` = ``service/source``, ``schedule`` = its schedule
    name: full, incremental, backup, logs), ``replicate`` (``target`` = ``repository``,
    ``schedule`` = the replica's location), ``replicate-logs`` (the same, for the log
    follower that copies archived logs between replications), ``check`` or ``retention``
    (``target`` = the repository, ``schedule`` = the action's name), ``cut`` (``target``
    = the service: a consistent cut, dr/cuts.py).
    """

    action: str
    target: str
    schedule: str

    def __str__(self) -> str:
        if self.action == "backup":
            return f"{self.target} {self.schedule}"
        if self.action == "replicate":
            return f"replicate {self.target} to {self.schedule}"
        if self.action == LOG_REPLICATION:
            return f"replicate logs of {self.target} to {self.schedule}"
        return f"{self.action} {self.target}"


def scheduled_jobs(policy: Policy) -> list[tuple[JobId, str]]:
    """Every job of ``policy`` with its cron expression (continuous, off and after-backup
    jobs have none and are left out)."""
    jobs: list[tuple[JobId, str]] = []
    for service_name, service in policy.services.items():
        for source in service.sources:
            target = f"{service_name}/{source.name}"
            for name, (spec, _origin) in source.effective_schedules().items():
                if cron_error(spec) is None:
                    jobs.append((JobId("backup", target, name), spec))
        if cron_error(service.recovery.cuts) is None:
            jobs.append((JobId("cut", service_name, "cuts"), service.recovery.cuts))
        if service.drill is not None and cron_error(service.drill.schedule) is None:
            jobs.append((JobId("drill", service_name, "drill"), service.drill.schedule))
    for repo_name, repo in policy.repositories.items():
        for replica in repo.replicas:
            if cron_error(replica.schedule) is None:
                jobs.append((JobId("replicate", repo_name, replica.location), replica.schedule))
        for action, spec in (
            ("check", policy.daemon.check.schedule),
            ("retention", policy.daemon.retention.schedule),
        ):
            if cron_error(spec) is None:
                jobs.append((JobId(action, repo_name, action), spec))
    return sorted(jobs)


def next_runs(policy: Policy, now: datetime, count: int) -> dict[JobId, list[datetime]]:
    """For every cron-scheduled job of ``policy``, its next ``count`` run times after ``now``
    (strictly later, in the policy's time zone)."""
    tz = policy.daemon.timezone
    return {job: cron_times(spec, now, count, tz) for job, spec in scheduled_jobs(policy)}
