"""The retention policy: each rule, their combinations, groups, reasons and durations."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safehold.errors import InvalidArgument
from safehold.ops.retention import (
    NEWEST_REASON,
    Decision,
    Duration,
    GroupKey,
    Policy,
    apply_policy,
    apply_policy_grouped,
    group_snapshots,
    parse_count,
    parse_duration,
    parse_group_by,
)
from safehold.repo.snapshot import Snapshot, format_time


def snap(
    when: str | datetime,
    host: str = "h",
    paths: Iterable[str] = ("/data",),
    tags: Iterable[str] = (),
    nr: int = 0,
) -> Snapshot:
    time = when if isinstance(when, str) else format_time(when)
    s = Snapshot(time=time, tree="t", paths=list(paths), hostname=host, tags=list(tags))
    s.id = hashlib.sha256(f"{time}{host}{s.paths}{s.tags}{nr}".encode()).hexdigest()
    return s


def kept(decisions: list[Decision]) -> list[str]:
    """Times of the kept snapshots, newest first."""
    return [d.snapshot.time[:19] for d in decisions if d.keep]


def reasons(decisions: list[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.snapshot.time[:19]: d.reasons for d in decisions}


def series(start: datetime, step: timedelta, n: int) -> list[Snapshot]:
    return [snap(start + i * step, nr=i) for i in range(n)]


HOURLY = series(datetime(2024, 1, 1, 0, 0, tzinfo=UTC), timedelta(minutes=30), 6)
DAILY = series(datetime(2024, 1, 1, 8, 0, tzinfo=UTC), timedelta(hours=8), 9)  # 3 a day


# ---- durations and counts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("30d", Duration(days=30), "30d"),
        ("2w", Duration(weeks=2), "2w"),
        ("1y6m", Duration(years=1, months=6), "1y6m"),
        ("12h", Duration(hours=12), "12h"),
        (" 6m1y ", Duration(years=1, months=6), "1y6m"),
        ("1y2m3w4d5h", Duration(1, 2, 3, 4, 5), "1y2m3w4d5h"),
        ("0y7d", Duration(days=7), "7d"),
    ],
)
def test_parse_duration(text: str, expected: Duration, shown: str) -> None:
    assert parse_duration(text) == expected
    assert str(parse_duration(text)) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("30", "no unit after 30"),
        ("30x", "unknown unit 'x'"),
        ("d", "expected a number at 'd'"),
        ("-1d", "expected a number at '-1d'"),
        ("1d2d", "unit 'd' given twice"),
        ("0d", "longer than zero"),
        ("1.5d", "no unit after 1"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_duration(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("moment", "duration", "expected"),
    [
        (datetime(2024, 3, 10, 12, tzinfo=UTC), "30d", datetime(2024, 2, 9, 12, tzinfo=UTC)),
        (datetime(2024, 1, 15, 12, tzinfo=UTC), "1m", datetime(2023, 12, 15, 12, tzinfo=UTC)),
        (datetime(2024, 7, 1, tzinfo=UTC), "1y6m", datetime(2023, 1, 1, tzinfo=UTC)),
        (datetime(2024, 1, 1, 6, tzinfo=UTC), "12h", datetime(2023, 12, 31, 18, tzinfo=UTC)),
        (datetime(2024, 1, 15, tzinfo=UTC), "2w", datetime(2024, 1, 1, tzinfo=UTC)),
        # Go's AddDate normalises 31 February 2023 to 3 March, and restic uses it
        (datetime(2023, 3, 31, tzinfo=UTC), "1m", datetime(2023, 3, 3, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), "1y", datetime(2023, 3, 1, tzinfo=UTC)),
    ],
)
def test_duration_before(moment: datetime, duration: str, expected: datetime) -> None:
    assert parse_duration(duration).before(moment) == expected


def test_duration_reaching_before_year_one_covers_everything() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_duration("3000y").before(moment) == datetime.min.replace(tzinfo=UTC)
    assert parse_duration("999999999d").before(moment) == datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"), [("3", 3), ("0", 0), ("-1", -1), ("unlimited", -1), ("Unlimited", -1)]
)
def test_parse_count(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(("text", "message"), [("-2", "other than -1"), ("x", "use a number")])
def test_parse_count_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_count(text)


def test_policy_rejects_negative_counts() -> None:
    with pytest.raises(InvalidArgument, match="keep-daily must be -1"):
        Policy(daily=-3)


# ---- the empty policy ---------------------------------------------------------------


@pytest.mark.parametrize("snapshots", [[], DAILY])
def test_empty_policy_is_refused(snapshots: list[Snapshot]) -> None:
    assert Policy().is_empty()
    assert Policy(last=0, daily=0, tags=()).is_empty()
    with pytest.raises(InvalidArgument, match="refusing to remove every snapshot"):
        apply_policy(snapshots, Policy())
    with pytest.raises(InvalidArgument, match="refusing to remove every snapshot"):
        apply_policy_grouped(snapshots, Policy(), frozenset({"host"}))


@pytest.mark.parametrize(
    "policy",
    [
        Policy(last=1),
        Policy(yearly=-1),
        Policy(within=Duration(hours=1)),
        Policy(tags=(("x",),)),
    ],
)
def test_any_rule_makes_a_policy(policy: Policy) -> None:
    assert not policy.is_empty()


# ---- each rule ----------------------------------------------------------------------


def test_no_snapshots_nothing_to_decide() -> None:
    assert apply_policy([], Policy(last=3)) == []


def test_keep_last() -> None:
    decisions = apply_policy(DAILY, Policy(last=2))
    assert [d.snapshot for d in decisions] == DAILY[::-1]  # newest first
    assert kept(decisions) == ["2024-01-04T00:00:00", "2024-01-03T16:00:00"]
    assert all(d.reasons == ("last snapshot",) for d in decisions if d.keep)
    assert all(d.reasons == () for d in decisions if not d.keep)


def test_keep_last_more_than_there_are_keeps_all() -> None:
    assert len(kept(apply_policy(DAILY, Policy(last=100)))) == len(DAILY)
    assert len(kept(apply_policy(DAILY, Policy(last=-1)))) == len(DAILY)


def test_keep_hourly() -> None:
    # 00:00 00:30 01:00 01:30 02:00 02:30: the newest of the last two hours
    decisions = apply_policy(HOURLY, Policy(hourly=2))
    assert kept(decisions) == ["2024-01-01T02:30:00", "2024-01-01T01:30:00"]
    assert set(reasons(decisions)["2024-01-01T01:30:00"]) == {"hourly snapshot"}


def test_keep_daily() -> None:
    # days 1-3 at 08:00, 16:00, 00:00 of the next day: the 00:00 belongs to the next day
    decisions = apply_policy(DAILY, Policy(daily=2))
    assert kept(decisions) == ["2024-01-04T00:00:00", "2024-01-03T16:00:00"]


def test_keep_daily_counts_days_that_have_snapshots() -> None:
    gappy = [snap(f"2024-01-{day:02d}T10:00:00Z") for day in (1, 5, 20, 21)]
    assert kept(apply_policy(gappy, Policy(daily=3))) == [
        "2024-01-21T10:00:00",
        "2024-01-20T10:00:00",
        "2024-01-05T10:00:00",
    ]


def test_keep_weekly_uses_iso_weeks() -> None:
    # Monday 30 December 2024 opens ISO week 1 of 2025, which ends on Sunday 5 January
    snapshots = [snap(f"{d}T12:00:00Z") for d in ("2024-12-29", "2024-12-30", "2025-01-05")]
    decisions = apply_policy(snapshots, Policy(weekly=2))
    assert kept(decisions) == ["2025-01-05T12:00:00", "2024-12-29T12:00:00"]
    decisions = apply_policy(snapshots, Policy(yearly=2))
    assert kept(decisions) == ["2025-01-05T12:00:00", "2024-12-30T12:00:00"]


def test_keep_monthly_and_yearly() -> None:
    snapshots = [
        snap(t)
        for t in (
            "2022-06-01T00:00:00Z",
            "2023-01-10T00:00:00Z",
            "2023-01-20T00:00:00Z",
            "2023-02-05T00:00:00Z",
            "2024-03-01T00:00:00Z",
        )
    ]
    assert kept(apply_policy(snapshots, Policy(monthly=3))) == [
        "2024-03-01T00:00:00",
        "2023-02-05T00:00:00",
        "2023-01-20T00:00:00",
    ]
    assert kept(apply_policy(snapshots, Policy(yearly=2))) == [
        "2024-03-01T00:00:00",
        "2023-02-05T00:00:00",
    ]


def test_unlimited_daily_keeps_the_newest_of_every_day_and_the_oldest() -> None:
    decisions = apply_policy(DAILY, Policy(daily=-1))
    assert kept(decisions) == [
        "2024-01-04T00:00:00",
        "2024-01-03T16:00:00",
        "2024-01-02T16:00:00",
        "2024-01-01T16:00:00",
        "2024-01-01T08:00:00",
    ]
    assert reasons(decisions)["2024-01-01T08:00:00"] == ("oldest daily snapshot",)


def test_counts_left_over_keep_the_oldest_snapshot() -> None:
    """As restic: fewer periods than the count asks for keeps the longest history."""
    decisions = apply_policy(DAILY, Policy(daily=7))
    assert kept(decisions)[-1] == "2024-01-01T08:00:00"
    assert reasons(decisions)["2024-01-01T08:00:00"] == ("oldest daily snapshot",)
    # the count used up: the oldest goes
    assert "2024-01-01T08:00:00" not in kept(apply_policy(DAILY, Policy(daily=4)))


def test_a_lone_snapshot_is_kept_without_the_oldest_prefix() -> None:
    decisions = apply_policy([snap("2024-01-01T00:00:00Z")], Policy(daily=1))
    assert decisions[0].reasons == ("daily snapshot",)


def test_keep_within() -> None:
    decisions = apply_policy(DAILY, Policy(within=Duration(days=1)))
    # newest is 2024-01-04T00:00; exactly one day before is not newer, so it goes
    assert kept(decisions) == ["2024-01-04T00:00:00", "2024-01-03T16:00:00", "2024-01-03T08:00:00"]
    assert all(d.reasons == ("within 1d",) for d in decisions if d.keep)


def test_keep_within_is_relative_to_the_newest_snapshot_not_now() -> None:
    old = [snap("2001-01-01T00:00:00Z"), snap("2001-01-10T00:00:00Z")]
    assert kept(apply_policy(old, Policy(within=Duration(days=30)))) == [
        "2001-01-10T00:00:00",
        "2001-01-01T00:00:00",
    ]


def test_keep_within_months() -> None:
    snapshots = [snap(t) for t in ("2024-01-30T00:00:00Z", "2024-02-01T00:00:00Z")]
    snapshots.append(snap("2024-03-31T00:00:00Z"))
    # 31 March minus 2 months is 31 January: 30 January goes, 1 February stays
    assert kept(apply_policy(snapshots, Policy(within=parse_duration("2m")))) == [
        "2024-03-31T00:00:00",
        "2024-02-01T00:00:00",
    ]


def test_keep_tag() -> None:
    snapshots = [
        snap("2024-01-01T00:00:00Z", tags=["a"]),
        snap("2024-01-02T00:00:00Z", tags=["a", "b"]),
        snap("2024-01-03T00:00:00Z", tags=["b", "c"]),
        snap("2024-01-04T00:00:00Z"),
    ]
    decisions = apply_policy(snapshots, Policy(tags=(("a", "b"), ("c",))))
    assert reasons(decisions) == {
        "2024-01-04T00:00:00": (NEWEST_REASON,),  # restic would remove it; we never do
        "2024-01-03T00:00:00": ("tag c",),
        "2024-01-02T00:00:00": ("tag a,b",),
        "2024-01-01T00:00:00": (),
    }


# ---- combinations and reasons -------------------------------------------------------


def test_rules_combine_and_every_reason_is_listed() -> None:
    tagged = [*DAILY[:-1], snap(DAILY[-1].time, tags=["release"], nr=99)]
    policy = Policy(last=1, daily=2, weekly=2, within=Duration(hours=9), tags=(("release",),))
    decisions = apply_policy(tagged, policy)
    assert reasons(decisions) == {
        "2024-01-04T00:00:00": (
            "tag release",
            "within 9h",
            "last snapshot",
            "daily snapshot",
            "weekly snapshot",
        ),
        "2024-01-03T16:00:00": ("within 9h", "daily snapshot"),
        "2024-01-03T08:00:00": (),
        "2024-01-03T00:00:00": (),
        "2024-01-02T16:00:00": (),
        "2024-01-02T08:00:00": (),
        "2024-01-02T00:00:00": (),
        "2024-01-01T16:00:00": (),
        "2024-01-01T08:00:00": ("oldest weekly snapshot",),
    }


def test_typical_30_day_policy() -> None:
    """Every 6 hours, 1 January to 29 February 2024: 7 daily, 4 weekly, 12 monthly."""
    start = datetime(2024, 1, 1, 3, tzinfo=UTC)
    snapshots = series(start, timedelta(hours=6), 60 * 4)
    decisions = apply_policy(snapshots, Policy(daily=7, weekly=4, monthly=12))
    days = sorted({d.snapshot.datetime.date() for d in decisions if d.keep})
    # days 23-29 February; weeks add the 18th and the 11th (the 25th is a day already);
    # months add 31 January, and the oldest, as months are left over
    assert len(kept(decisions)) == 7 + 2 + 1 + 1
    assert reasons(decisions)["2024-02-11T21:00:00"] == ("weekly snapshot",)
    assert reasons(decisions)["2024-01-31T21:00:00"] == ("monthly snapshot",)
    assert reasons(decisions)["2024-01-01T03:00:00"] == ("oldest monthly snapshot",)
    assert reasons(decisions)["2024-02-25T21:00:00"] == ("daily snapshot", "weekly snapshot")
    assert days[-7:] == [datetime(2024, 2, 29).date() - timedelta(days=i) for i in range(6, -1, -1)]
    assert datetime(2024, 1, 31, 21, tzinfo=UTC) in {
        d.snapshot.datetime for d in decisions if d.keep
    }


def test_buckets_use_the_timestamps_own_offset() -> None:
    """23:30 and 01:00 at -05:00 are two days there, though one UTC day (2 January)."""
    est = timezone(timedelta(hours=-5))
    late = snap(datetime(2024, 1, 1, 23, 30, tzinfo=est))
    early = snap(datetime(2024, 1, 2, 1, 0, tzinfo=est))
    assert len(kept(apply_policy([late, early], Policy(daily=5)))) == 2
    as_utc = [snap(s.datetime.astimezone(UTC)) for s in (late, early)]
    assert len(kept(apply_policy(as_utc, Policy(daily=1)))) == 1


def test_input_order_does_not_matter() -> None:
    policy = Policy(last=2, daily=3)
    assert apply_policy(DAILY, policy) == apply_policy(DAILY[::-1], policy)


def test_same_time_snapshots_are_ordered_by_id() -> None:
    twins = [snap("2024-01-01T00:00:00Z", nr=i) for i in range(3)]
    decisions = apply_policy(twins, Policy(last=1))
    assert decisions[0].keep
    assert decisions[0].snapshot.id == max(s.id for s in twins)


# ---- groups -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host,paths", {"host", "paths"}),
        ("tags", {"tags"}),
        (" host , tags ,", {"host", "tags"}),
        ("", set()),
        ("host,paths,tags", {"host", "paths", "tags"}),
    ],
)
def test_parse_group_by(text: str, expected: set[str]) -> None:
    assert parse_group_by(text) == expected


def test_parse_group_by_rejects_unknown_fields() -> None:
    with pytest.raises(InvalidArgument, match="cannot group by hostname, user: choose from"):
        parse_group_by("hostname,paths,user")


GROUPED = [
    snap("2024-01-01T00:00:00Z", host="a", paths=["/x"], tags=["t"]),
    snap("2024-01-02T00:00:00Z", host="b", paths=["/x"]),
    snap("2024-01-03T00:00:00Z", host="a", paths=["/y", "/x"]),
    snap("2024-01-04T00:00:00Z", host="a", paths=["/x", "/y"], tags=["u", "t"]),
    snap("2024-01-05T00:00:00Z", host="a", paths=["/x"]),
]


def test_group_keys() -> None:
    groups = group_snapshots(GROUPED, parse_group_by("host,paths"))
    assert {k: len(v) for k, v in groups.items()} == {
        GroupKey("a", ("/x",)): 2,
        GroupKey("b", ("/x",)): 1,
        GroupKey("a", ("/x", "/y")): 2,  # path order does not matter
    }
    by_tags = group_snapshots(GROUPED, parse_group_by("tags"))
    assert {k: len(v) for k, v in by_tags.items()} == {
        GroupKey(tags=("t",)): 1,
        GroupKey(tags=()): 3,
        GroupKey(tags=("t", "u")): 1,
    }
    assert list(group_snapshots(GROUPED, frozenset())) == [GroupKey()]


def test_policy_applies_per_group() -> None:
    results = apply_policy_grouped(GROUPED, Policy(last=1), parse_group_by("host,paths"))
    assert [r.key for r in results] == [  # by their oldest snapshot
        GroupKey("a", ("/x",)),
        GroupKey("b", ("/x",)),
        GroupKey("a", ("/x", "/y")),
    ]
    assert [[d.snapshot.time[:10] for d in r.keep] for r in results] == [
        ["2024-01-05"],
        ["2024-01-02"],
        ["2024-01-04"],
    ]
    assert [[d.snapshot.time[:10] for d in r.remove] for r in results] == [
        ["2024-01-01"],
        [],
        ["2024-01-03"],
    ]
    one_group = apply_policy_grouped(GROUPED, Policy(last=1), frozenset())
    assert [d.snapshot.time[:10] for d in one_group[0].keep] == ["2024-01-05"]
    assert len(one_group[0].remove) == 4


def test_keep_within_counts_from_each_groups_newest() -> None:
    results = apply_policy_grouped(GROUPED, Policy(within=Duration(hours=1)), frozenset({"host"}))
    assert {r.key.hostname: len(r.keep) for r in results} == {"a": 1, "b": 1}


# ---- properties ---------------------------------------------------------------------

MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@st.composite
def snapshot_lists(draw: st.DrawFn) -> list[Snapshot]:
    items = draw(
        st.lists(
            st.tuples(
                MOMENTS,
                st.sampled_from(["a", "b"]),
                st.sampled_from([("/x",), ("/y",)]),
                st.lists(st.sampled_from(["p", "q"]), unique=True),
            ),
            max_size=40,
        )
    )
    return [snap(t, host, paths, tags, nr=i) for i, (t, host, paths, tags) in enumerate(items)]


COUNT = st.sampled_from([0, 0, 1, 2, 3, 7, -1])
DURATIONS = st.builds(
    Duration,
    years=st.integers(0, 2),
    months=st.integers(0, 13),
    weeks=st.integers(0, 5),
    days=st.integers(0, 40),
    hours=st.integers(0, 48),
).filter(lambda d: str(d) != "")
TAG_GROUPS = st.lists(
    st.lists(st.sampled_from(["p", "q"]), min_size=1, unique=True).map(tuple), max_size=2
).map(tuple)
POLICIES = st.builds(
    Policy,
    last=COUNT,
    hourly=COUNT,
    daily=COUNT,
    weekly=COUNT,
    monthly=COUNT,
    yearly=COUNT,
    within=st.none() | DURATIONS,
    tags=TAG_GROUPS,
).filter(lambda p: not p.is_empty())
GROUP_BY = st.sets(st.sampled_from(["host", "paths", "tags"])).map(frozenset)


@given(snapshot_lists(), POLICIES, GROUP_BY)
def test_every_snapshot_is_decided_once(
    snapshots: list[Snapshot], policy: Policy, group_by: frozenset[str]
) -> None:
    results = apply_policy_grouped(snapshots, policy, group_by)
    keep = [d.snapshot.id for r in results for d in r.keep]
    remove = [d.snapshot.id for r in results for d in r.remove]
    assert sorted(keep + remove) == sorted(s.id for s in snapshots)
    assert not set(keep) & set(remove)
    assert all(d.keep == bool(d.reasons) for r in results for d in r.decisions)


@given(snapshot_lists(), POLICIES, GROUP_BY)
def test_the_newest_snapshot_of_a_group_is_never_removed(
    snapshots: list[Snapshot], policy: Policy, group_by: frozenset[str]
) -> None:
    """Whatever the rules (a tag-only policy too, unlike restic's)."""
    for result in apply_policy_grouped(snapshots, policy, group_by):
        newest = max(result.decisions, key=lambda d: (d.snapshot.datetime, d.snapshot.id))
        assert newest.keep, newest


@given(
    snapshot_lists(),
    st.builds(
        Duration, weeks=st.integers(0, 20), days=st.integers(0, 400), hours=st.integers(0, 500)
    ).filter(lambda d: str(d) != ""),
)
def test_keep_within_alone_keeps_exactly_the_snapshots_within(
    snapshots: list[Snapshot], within: Duration
) -> None:
    if not snapshots:
        return
    span = timedelta(weeks=within.weeks, days=within.days, hours=within.hours)
    newest = max(s.datetime for s in snapshots)
    decisions = apply_policy(snapshots, Policy(within=within))
    assert {d.snapshot.id for d in decisions if d.keep} == {
        s.id for s in snapshots if s.datetime > newest - span
    }
    assert {d.snapshot.id for d in decisions if not d.keep} == {
        s.id for s in snapshots if s.datetime <= newest - span
    }
    assert all(d.reasons == (f"within {within}",) for d in decisions if d.keep)


@given(snapshot_lists(), st.integers(1, 50))
def test_keep_last_alone_keeps_the_n_newest(snapshots: list[Snapshot], n: int) -> None:
    decisions = apply_policy(snapshots, Policy(last=n))
    newest_first = sorted(snapshots, key=lambda s: (s.datetime, s.id), reverse=True)
    assert [d.snapshot.id for d in decisions if d.keep] == [s.id for s in newest_first[:n]]


@given(snapshot_lists(), POLICIES)
def test_decisions_do_not_depend_on_input_order(snapshots: list[Snapshot], policy: Policy) -> None:
    assert apply_policy(snapshots, policy) == apply_policy(snapshots[::-1], policy)


def test_a_kept_incremental_keeps_its_chain() -> None:
    full = snap("2024-01-01T00:00:00Z", nr=1)
    full.source = {"kind": "mysql", "base": None}
    incr1 = snap("2024-01-01T06:00:00Z", nr=2)
    incr1.source = {"kind": "mysql", "base": full.id}
    incr2 = snap("2024-01-01T12:00:00Z", nr=3)
    incr2.source = {"kind": "mysql", "base": incr1.id}
    other = snap("2024-01-01T03:00:00Z", nr=4)
    (result,) = apply_policy_grouped([full, incr1, incr2, other], Policy(last=1), frozenset())
    decided = {d.snapshot.id: d for d in result.decisions}
    assert decided[incr2.id].reasons == ("last snapshot",)
    assert decided[incr1.id].reasons == (f"base of kept {incr2.short_id}",)
    assert decided[full.id].reasons == (f"base of kept {incr1.short_id}",)
    assert not decided[other.id].keep


def test_keep_within_keeps_the_base_of_a_database_recovery_window() -> None:
    """A PostgreSQL group with daily fulls: "within 3d" must reach back to 3 days before
    the newest, which replays WAL from the full taken just before that moment."""
    days = [snap(f"2024-01-0{d}T12:00:00Z", nr=d) for d in range(1, 8)]
    for s in days:
        s.source = {"kind": "postgres"}
    decisions = apply_policy(days, Policy(within=parse_duration("3d")))
    assert reasons(decisions) == {
        "2024-01-07T12:00:00": ("within 3d",),
        "2024-01-06T12:00:00": ("within 3d",),
        "2024-01-05T12:00:00": ("within 3d",),
        "2024-01-04T12:00:00": ("base of the 3d window",),  # exactly 3 days before
        "2024-01-03T12:00:00": (),
        "2024-01-02T12:00:00": (),
        "2024-01-01T12:00:00": (),
    }
    for s in days:  # plain files: keep-within keeps exactly what it says
        s.source = {}
    assert len([d for d in apply_policy(days, Policy(within=parse_duration("3d"))) if d.keep]) == 3
