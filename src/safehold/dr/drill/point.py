"""Which point a drill recovers: ``latest``, ``random`` (uniform within the window the
repository can restore, as AWS Backup's RANDOM_WITHIN_WINDOW), a time, or ``cut:ID``.

The window runs from the moment every source can first be brought back (the latest of
the sources' oldest recovery points) to the newest moment they all reach (the oldest of
the databases' newest points, or without databases the newest snapshot), the same rule
``recover --latest`` follows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from safehold.dr.jobs import require_service
from safehold.dr.policy import Policy
from safehold.dr.recovery.plan import Moment, newest_point, snapshot_point, tagged_snapshots
from safehold.errors import RecoveryRefused
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time, parse_time

__all__ = ["Window", "choose_moment", "recoverable_window"]


@dataclass(frozen=True)
class Window:
    oldest: datetime
    newest: datetime
    newest_by_source: dict[str, datetime]  # what each source can reach at best


def recoverable_window(policy: Policy, service: str, repo: Repository) -> Window:
    """The moments every source of ``service`` can be recovered to from ``repo``."""
    require_service(policy, service)
    snapshots = repo.list_snapshots()
    oldest: list[datetime] = []
    newest: dict[str, datetime] = {}
    logged: list[str] = []
    for source in policy.services[service].sources:
        tagged = tagged_snapshots(snapshots, service, source)
        if not tagged:
            raise RecoveryRefused(f"source {source.name} has no backup to drill")
        oldest.append(snapshot_point(tagged[0]))
        newest[source.name] = newest_point(repo, source, tagged)
        if source.kind in ("postgres", "mysql"):
            logged.append(source.name)
    end = min(newest[n] for n in logged) if logged else max(newest.values())
    start = min(max(oldest), end)
    return Window(start, end, newest)


def choose_moment(spec: str, window: Window, rng: random.Random | None = None) -> Moment:
    """The engine's moment for a drill's ``--point``."""
    if spec == "latest":
        return Moment("latest")
    if spec.startswith("cut:"):
        return Moment("cut", spec.removeprefix("cut:"))
    if spec == "random":
        span = window.newest - window.oldest
        chosen = window.oldest + span * (rng or random.SystemRandom()).random()
        return Moment("time", format_time(chosen))
    return Moment("time", format_time(parse_time(spec)))
