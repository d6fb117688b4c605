"""Retention: which snapshots a ``forget`` policy keeps, with restic's semantics.

A pure function of the snapshot list and the policy, so the CLI can show a dry run that
is exactly what a real run would do, and tests can check it without a repository.
Snapshots are bucketed by the wall-clock time in each timestamp's own offset (a time
recorded without one is local time), as restic does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from safehold.errors import InvalidArgument
from safehold.repo.snapshot import Snapshot

__all__ = [
    "GROUP_FIELDS",
    "NEWEST_REASON",
    "Decision",
    "Duration",
    "GroupKey",
    "GroupResult",
    "Policy",
    "apply_policy",
    "apply_policy_grouped",
    "group_snapshots",
    "keep_bases",
    "parse_count",
    "parse_duration",
    "parse_group_by",
    "refuse_empty",
]

UNLIMITED = -1
GROUP_FIELDS = ("host", "paths", "tags")
_UNITS = "ymwdh"
_DURATION_PART = re.compile(r"(\d+)([a-zA-Z]?)")


@dataclass(frozen=True)
class Duration:
    """A calendar duration (``1y6m``, ``2w``, ``30d``, ``12h``): months are not 30 days."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0

    def __str__(self) -> str:
        values = (self.years, self.months, self.weeks, self.days, self.hours)
        return "".join(f"{n}{unit}" for n, unit in zip(values, _UNITS, strict=True) if n)

    def before(self, moment: datetime) -> datetime:
        """``moment`` minus this duration, normalised like Go's ``AddDate`` (as restic)."""
        month_index = moment.year * 12 + moment.month - 1 - self.years * 12 - self.months
        days = moment.day - 1 - self.weeks * 7 - self.days
        try:
            first = moment.replace(year=month_index // 12, month=month_index % 12 + 1, day=1)
            return first + timedelta(days=days, hours=-self.hours)
        except (ValueError, OverflowError):  # before year 1: every snapshot is within
            return datetime.min.replace(tzinfo=moment.tzinfo)


def parse_duration(text: str) -> Duration:
    """``<number><unit>`` parts, units y(ears) m(onths) w(eeks) d(ays) h(ours), e.g. ``1y6m``."""
    spec = text.strip()
    example = "use numbers with units y, m, w, d, h, e.g. 30d, 2w, 1y6m, 12h"
    if not spec:
        raise InvalidArgument(f"empty duration: {example}")
    values: dict[str, int] = {}
    pos = 0
    while pos < len(spec):
        match = _DURATION_PART.match(spec, pos)
        if match is None:
            raise InvalidArgument(
                f"invalid duration {text!r}: expected a number at {spec[pos:]!r}; {example}"
            )
        number, unit = match.groups()
        if not unit:
            raise InvalidArgument(f"invalid duration {text!r}: no unit after {number}; {example}")
        if unit not in _UNITS:
            raise InvalidArgument(f"invalid duration {text!r}: unknown unit {unit!r}; {example}")
        if unit in values:
            raise InvalidArgument(f"invalid duration {text!r}: unit {unit!r} given twice")
        values[unit] = int(number)
        pos = match.end()
    duration = Duration(*(values.get(unit, 0) for unit in _UNITS))
    if not str(duration):
        raise InvalidArgument(f"invalid duration {text!r}: it must be longer than zero")
    return duration


def parse_count(text: str) -> int:
    """A ``--keep-*`` count: a number of periods, ``-1`` or ``unlimited`` for all of them."""
    if text.strip().lower() == "unlimited":
        return UNLIMITED
    try:
        count = int(text)
    except ValueError:
        raise InvalidArgument(f"invalid count {text!r}: use a number, or unlimited") from None
    if count < UNLIMITED:
        raise InvalidArgument(
            f"invalid count {text!r}: negative counts other than -1 are not allowed"
        )
    return count


@dataclass(frozen=True)
class Policy:
    """What to keep; a count of 0 means the rule is off, -1 that it is unlimited."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    tags: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for name, count in self.counts().items():
            if count < UNLIMITED:
                raise InvalidArgument(f"keep-{name} must be -1 (unlimited) or more, not {count}")

    def counts(self) -> dict[str, int]:
        """The count rules by name, in restic's order (finest period first)."""
        return {
            "last": self.last,
            "hourly": self.hourly,
            "daily": self.daily,
            "weekly": self.weekly,
            "monthly": self.monthly,
            "yearly": self.yearly,
        }

    def is_empty(self) -> bool:
        return not any(self.counts().values()) and self.within is None and not self.tags


@dataclass(frozen=True)
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class GroupKey:
    """The fields a group shares; ``None`` for a field that is not grouped on."""

    hostname: str | None = None
    paths: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GroupResult:
    key: GroupKey
    decisions: list[Decision]  # newest first

    @property
    def keep(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def remove(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


def parse_group_by(text: str) -> frozenset[str]:
    """``host,paths,tags`` or any subset; empty means one group for everything."""
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - set(GROUP_FIELDS))
    if unknown:
        raise InvalidArgument(
            f"cannot group by {', '.join(unknown)}: choose from {', '.join(GROUP_FIELDS)}"
        )
    return chosen


def group_snapshots(
    snapshots: Iterable[Snapshot], group_by: frozenset[str]
) -> dict[GroupKey, list[Snapshot]]:
    groups: dict[GroupKey, list[Snapshot]] = {}
    for snapshot in snapshots:
        key = GroupKey(
            hostname=snapshot.hostname if "host" in group_by else None,
            paths=tuple(sorted(snapshot.paths)) if "paths" in group_by else None,
            tags=tuple(sorted(snapshot.tags)) if "tags" in group_by else None,
        )
        groups.setdefault(key, []).append(snapshot)
    return groups


def refuse_empty(policy: Policy) -> None:
    """An empty policy would remove everything; restic keeps all, safehold refuses."""
    if policy.is_empty():
        raise InvalidArgument(
            "no policy given: use --keep-last, --keep-daily, --keep-within, ... "
            "(refusing to remove every snapshot)"
        )


def _bucketers() -> list[tuple[str, Callable[[datetime, int], object]]]:
    return [
        ("last", lambda _t, nr: nr),
        ("hourly", lambda t, _nr: (t.year, t.month, t.day, t.hour)),
        ("daily", lambda t, _nr: (t.year, t.month, t.day)),
        ("weekly", lambda t, _nr: t.isocalendar()[:2]),
        ("monthly", lambda t, _nr: (t.year, t.month)),
        ("yearly", lambda t, _nr: t.year),
    ]


NEWEST_REASON = "newest snapshot (always kept)"
PITR_KINDS = frozenset({"postgres", "mysql"})  # base backups that logs replay from


def apply_policy(snapshots: Sequence[Snapshot], policy: Policy) -> list[Decision]:
    """Decide every snapshot of one group, newest first, as restic's ``ApplyPolicy``.

    Each count rule keeps the newest snapshot of each of its last N periods that have
    snapshots; when the group runs out before a rule's count does, the oldest snapshot is
    kept too (the longest history the counts allow). Unlike restic, the newest snapshot
    is always kept, even by a tag-only policy: a policy never leaves a group without its
    latest restore point. Raises on an empty policy rather than remove everything.
    """
    refuse_empty(policy)
    ordered = sorted(snapshots, key=lambda s: (s.datetime, s.id), reverse=True)
    if not ordered:
        return []
    cutoff = policy.within.before(ordered[0].datetime) if policy.within else None
    counts = policy.counts()
    last_bucket: dict[str, object] = {}
    decisions = []
    for nr, snapshot in enumerate(ordered):
        moment = snapshot.datetime
        reasons = [
            f"tag {','.join(group)}" for group in policy.tags if set(group) <= set(snapshot.tags)
        ]
        if cutoff is not None and moment > cutoff:
            reasons.append(f"within {policy.within}")
        oldest = nr == len(ordered) - 1
        for name, bucketer in _bucketers():
            if counts[name] == 0:
                continue
            bucket = bucketer(moment, nr)
            if name in last_bucket and bucket == last_bucket[name] and not oldest:
                continue
            prefix = "oldest " if name in last_bucket and bucket == last_bucket[name] else ""
            reasons.append(f"{prefix}{name} snapshot")
            last_bucket[name] = bucket
            if counts[name] > 0:
                counts[name] -= 1
        if nr == 0 and not reasons:
            reasons.append(NEWEST_REASON)
        decisions.append(Decision(snapshot, bool(reasons), tuple(reasons)))
    if cutoff is not None:
        _keep_window_base(decisions, cutoff, str(policy.within))
    return decisions


def _keep_window_base(decisions: list[Decision], cutoff: datetime, within: str) -> None:
    """For a database with archived logs, "within 30d" means: recoverable to any moment of
    the last 30 days. A moment just after the cutoff replays logs from the last base backup
    before it, so that one is kept too (the newest backup at or before the cutoff)."""
    for i, d in enumerate(decisions):  # newest first
        if d.snapshot.datetime <= cutoff and d.snapshot.source.get("kind") in PITR_KINDS:
            if not d.keep:
                decisions[i] = Decision(d.snapshot, True, (f"base of the {within} window",))
            return


def keep_bases(results: list[GroupResult]) -> None:
    """Keep what kept snapshots are built on: an incremental's ``source.base``, and so on
    down its chain (a MariaDB incremental restores only on top of its base)."""
    where = {d.snapshot.id: (r, i) for r in results for i, d in enumerate(r.decisions)}
    todo = [d for r in results for d in r.keep]
    while todo:
        kept = todo.pop()
        base = kept.snapshot.source.get("base")
        if not isinstance(base, str) or base not in where:
            continue
        result, i = where[base]
        found = result.decisions[i]
        reason = f"base of kept {kept.snapshot.short_id}"
        if not found.keep:
            result.decisions[i] = Decision(found.snapshot, True, (reason,))
            todo.append(result.decisions[i])


def apply_policy_grouped(
    snapshots: Iterable[Snapshot], policy: Policy, group_by: frozenset[str]
) -> list[GroupResult]:
    """The policy applied to each group separately, groups in order of their oldest snapshot."""
    refuse_empty(policy)
    groups = group_snapshots(snapshots, group_by)
    results = [GroupResult(key, apply_policy(members, policy)) for key, members in groups.items()]
    keep_bases(results)
    return sorted(
        results, key=lambda r: min((d.snapshot.datetime, d.snapshot.id) for d in r.decisions)
    )
