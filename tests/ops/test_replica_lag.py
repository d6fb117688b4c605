"""The lag's arithmetic: which moments of the primary's windows the replica cannot reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from safehold.ops.replica_lag import Window, first_uncovered

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
