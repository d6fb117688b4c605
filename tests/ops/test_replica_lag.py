"""The lag's arithmetic: which moments of the primary's windows the replica cannot reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from safehold.ops.replica_lag import LogPoints, Window, first_uncovered, oldest_unrestorable
from safehold.ops.replicate import Inventory

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def span(start_min: int, end_min: int) -> Window:
    return Window(T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min))


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_replica_that_covers_everything_is_not_behind() -> None:
    assert first_uncovered([span(0, 60)], [span(0, 60)]) is None
    assert first_uncovered([span(0, 60)], [span(0, 30), span(30, 60)]) is None  # joined
    assert first_uncovered([span(10, 10)], [span(10, 10)]) is None  # a backup without logs
    assert first_uncovered([], []) is None


def test_trailing_logs_count_from_the_replicas_newest_restorable_moment() -> None:
    assert first_uncovered([span(0, 60)], [span(0, 45)]) == at(45)
    assert first_uncovered([span(0, 60), span(70, 90)], [span(0, 60), span(70, 80)]) == at(80)


def test_a_window_the_replica_lacks_counts_from_its_start() -> None:
    assert first_uncovered([span(0, 60)], []) == at(0)
    assert first_uncovered([span(0, 60), span(70, 90)], [span(0, 60)]) == at(70)
    # the oldest of several: a gap in an old window beats a newer missing window
    assert first_uncovered([span(0, 60), span(70, 90)], [span(0, 20), span(70, 80)]) == at(20)
    # the replica's backup is newer than the primary's: the older start is missing
    assert first_uncovered([span(0, 60)], [span(30, 60)]) == at(0)


def test_the_reason_says_how_far_the_replica_restores_or_that_it_cannot() -> None:
    nothing_missing = Inventory({}, {}, True)
    trailing = LogPoints("postgres", "7311", (span(0, 60),), (span(0, 45),))
    behind = oldest_unrestorable([], nothing_missing, [trailing])
    assert behind is not None and behind.since == at(45)
    assert behind.reason.startswith(
        f"WAL of PostgreSQL cluster 7311: the replica restores to {at(45).isoformat()}"
    )
    lacking = LogPoints("mysql", "db1", (span(0, 60),), ())
    behind = oldest_unrestorable([], nothing_missing, [trailing, lacking])
    assert behind is not None and behind.since == at(0)
    assert f"db1: the replica cannot restore from {at(0).isoformat()} on" in behind.reason
    assert oldest_unrestorable([], nothing_missing, []) is None
