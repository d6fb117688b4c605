"""next_runs: strictly increasing, in agreement with croniter, and matching the fields."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from safehold.dr.load import parse_policy
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId, _standard, cron_error, cron_times, next_runs

# (lowest, highest) of minute, hour, day of month, month, day of week
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


@st.composite
def cron_field(draw: st.DrawFn, index: int) -> tuple[str, set[int] | None]:
    """A field's text and the values it allows (None for '*', which matters for the days)."""
    lo, hi = RANGES[index]
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return "*", None
    if choice == 1:
        value = draw(st.integers(lo, hi))
        return str(value), {value}
    if choice == 2:
        a, b = sorted(draw(st.tuples(st.integers(lo, hi), st.integers(lo, hi))))
        return f"{a}-{b}", set(range(a, b + 1))
    if choice == 3:
        step = draw(st.integers(1, hi - lo))
        return f"*/{step}", set(range(lo, hi + 1, step))
    values = draw(st.sets(st.integers(lo, hi), min_size=1, max_size=4))
    return ",".join(map(str, sorted(values))), values


@st.composite
def cron_expression(draw: st.DrawFn) -> tuple[str, list[set[int] | None]]:
    fields = [draw(cron_field(i)) for i in range(5)]
    text = " ".join(text for text, _ in fields)
    # The day rule: a day matching either day field fires when both restrict, and both
    # must match otherwise. Which fields "restrict" is croniter's reading (a field it
    # expands to "*"); Vixie cron instead looks for a leading "*" in the text.
    expanded = croniter.expand(_standard(text))[0]
    dom_star, dow_star = expanded[2] == ["*"], expanded[4] == ["*"]
    return text, [a for _, a in fields] + [None if dom_star else set(), None if dow_star else set()]


def fires_at(moment: datetime, allowed: list[set[int] | None]) -> bool:
    """Cron's rule, written out: days match on day-of-month OR weekday when both restrict,
    AND otherwise."""
    minute, hour, dom, month, dow, dom_written, dow_written = allowed
    weekday = (moment.weekday() + 1) % 7  # cron: 0 = Sunday
    if moment.second or (minute is not None and moment.minute not in minute):
        return False
    if hour is not None and moment.hour not in hour:
        return False
    if month is not None and moment.month not in month:
        return False
    dom_ok = dom is None or moment.day in dom
    dow_ok = dow is None or weekday in dow
    if dom_written is not None and dow_written is not None:  # both restrict
        return dom_ok or dow_ok
    return dom_ok and dow_ok


def policy_with(expression: str) -> Policy:
    return Policy.model_validate(
        {
            "repositories": {"main": {"location": "/r", "password_env": "PW"}},
            "services": {
                "s": {
                    "sources": [
                        {
                            "name": "f",
                            "kind": "files",
                            "options": {"paths": ["/d"]},
                            "schedules": {"backup": expression},
                        }
                    ]
                }
            },
        }
    )


@settings(max_examples=150, deadline=None)
@given(
    cron_expression(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
    st.integers(1, 6),
)
def test_next_runs_increase_strictly_and_agree_with_croniter(
    expression: tuple[str, list[set[int] | None]], start: datetime, count: int
) -> None:
    text, allowed = expression
    assume(cron_error(text) is None)  # e.g. "0 0 31 2 *" never fires and is refused
    now = start.replace(tzinfo=UTC)
    runs = next_runs(policy_with(text), now, count)[JobId("backup", "s/f", "backup")]
    assert len(runs) == count
    assert runs[0] > now
    assert all(a < b for a, b in itertools.pairwise(runs))
    it = croniter(_standard(text), now)  # equal ranges (5-5) as cron reads them: _standard
    assert runs == [it.get_next(datetime) for _ in range(count)]
    assert all(fires_at(moment, allowed) for moment in runs)


@settings(max_examples=60, deadline=None)
@given(
    cron_expression(), st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))
)
def test_no_run_is_skipped_between_now_and_the_first(
    expression: tuple[str, list[set[int] | None]], start: datetime
) -> None:
    """Within the next two days, minute by minute, the first run is the first match."""
    text, allowed = expression
    assume(cron_error(text) is None)
    now = start.replace(second=0, microsecond=0, tzinfo=UTC)
    (first,) = cron_times(text, now, 1)
    moment = now + timedelta(minutes=1)
    while moment < min(first, now + timedelta(days=2)):
        assert not fires_at(moment, allowed), f"{text} fires at {moment}, before {first}"
        moment += timedelta(minutes=1)


def test_seconds_first_and_aliases() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert cron_times("*/10 * * * * *", now, 2) == [
        now + timedelta(seconds=10),
        now + timedelta(seconds=20),
    ]
    assert cron_times("@daily", now, 1) == [now + timedelta(days=1)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("5-5 * * * *", ["00:05", "01:05"]),
        ("10-10,20 * * * *", ["00:10", "00:20"]),
        ("0 0 * * 1-1", ["2026-01-05", "2026-01-12"]),  # Mondays, not every day
    ],
)
def test_an_equal_range_is_one_value_as_in_cron(expression: str, expected: list[str]) -> None:
    runs = cron_times(expression, datetime(2026, 1, 1, tzinfo=UTC), 2)
    texts = [r.strftime("%H:%M") if ":" in expected[0] else r.date().isoformat() for r in runs]
    assert texts == expected


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time-zone-aware"):
        cron_times("* * * * *", datetime(2026, 1, 1), 1)


def test_continuous_and_off_schedules_have_no_run_times() -> None:
    policy = parse_policy(
        """
[repositories.main]
location = "/r"
password_env = "PW"
[[services.s.sources]]
name = "db"
kind = "postgres"
options.pgdata = "/pg"
schedules = { incremental = "off" }
"""
    )
    runs = next_runs(policy, datetime(2026, 1, 1, tzinfo=UTC), 1)
    assert sorted(str(job) for job in runs) == ["check main", "retention main", "s/db full"]
