"""Snapshot documents, finding a snapshot by reference, and times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from safehold.errors import CorruptObject, InvalidArgument, SnapshotNotFound
from safehold.repo.snapshot import Snapshot, find_snapshot, format_time, parse_time


def snap(snapshot_id: str, time: str, **fields: Any) -> Snapshot:
    return Snapshot(
        time=time, tree="ab" * 32, paths=["/data"], hostname="h", id=snapshot_id, **fields
    )


SNAPSHOTS = [
    snap("aaaa1111" + "0" * 56, "2026-01-01T10:00:00+00:00"),
    snap("aaaa2222" + "0" * 56, "2026-01-03T10:00:00+00:00"),
    snap("bbbb3333" + "0" * 56, "2026-01-02T10:00:00+00:00"),
]


# ---- find_snapshot --------------------------------------------------------------------


def test_latest_is_the_newest_by_time_not_by_order() -> None:
    assert find_snapshot(SNAPSHOTS, "latest").id.startswith("aaaa2222")


def test_latest_compares_instants_across_offsets() -> None:
    utc = snap("c" * 64, "2026-01-01T10:00:00+00:00")
    earlier_in_paris = snap("d" * 64, "2026-01-01T10:30:00+01:00")  # 09:30 UTC
    assert find_snapshot([utc, earlier_in_paris], "latest") is utc


def test_latest_breaks_ties_by_id() -> None:
    a = snap("1" * 64, "2026-01-01T10:00:00+00:00")
    b = snap("2" * 64, "2026-01-01T11:00:00+01:00")  # the same instant
    assert find_snapshot([b, a], "latest") is b


def test_latest_of_nothing_is_not_found() -> None:
    with pytest.raises(SnapshotNotFound):
        find_snapshot([], "latest")


@pytest.mark.parametrize("ref", ["bbbb3333", "bbbb", "b", "BBBB3333", "bbbb3333" + "0" * 56])
def test_unique_prefix_or_full_id(ref: str) -> None:
    assert find_snapshot(SNAPSHOTS, ref).id.startswith("bbbb3333")


def test_ambiguous_prefix() -> None:
    with pytest.raises(InvalidArgument, match="ambiguous"):
        find_snapshot(SNAPSHOTS, "aaaa")


@pytest.mark.parametrize("ref", ["cccc", "", "aaaa1111x", "bbbb3333" + "0" * 57])
def test_missing(ref: str) -> None:
    with pytest.raises(SnapshotNotFound):
        find_snapshot(SNAPSHOTS, ref)


def test_short_id() -> None:
    assert SNAPSHOTS[0].short_id == "aaaa1111"


# ---- times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00+00:00", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        (
            "2026-01-31T12:00:00.250000+02:00",
            datetime(2026, 1, 31, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-01-31 12:00:00-05:00", datetime(2026, 1, 31, 17, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_parse_time_without_offset_is_local_time() -> None:
    moment = parse_time("2026-06-01T08:00:00")
    assert moment.tzinfo is not None
    assert moment == datetime(2026, 6, 1, 8).astimezone()


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01T00:00:00Z", "31/01/2026"])
def test_parse_time_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidArgument, match="RFC 3339"):
        parse_time(text)


def test_parse_time_accepts_lower_case_t_and_z() -> None:
    """RFC 3339 §5.6: "T" and "Z" may be lower case."""
    assert parse_time("2026-01-31t12:00:00z") == datetime(2026, 1, 31, 12, tzinfo=UTC)


def test_format_time_round_trips_with_microseconds_and_offset() -> None:
    moment = datetime(2026, 1, 31, 12, 0, 0, 5, tzinfo=UTC)
    text = format_time(moment)
    assert text == "2026-01-31T12:00:00.000005+00:00"
    assert parse_time(text) == moment
    naive = format_time(datetime(2026, 1, 31, 12))
    assert parse_time(naive) == datetime(2026, 1, 31, 12).astimezone()


# ---- the document ---------------------------------------------------------------------


def test_snapshot_document_round_trip_without_its_id() -> None:
    s = snap(
        "e" * 64,
        "2026-01-01T10:00:00+00:00",
        tags=["daily"],
        parent="f" * 64,
        summary={"files_new": 2, "total_duration": 1.5},
    )
    raw = s.to_bytes()
    assert "id" not in json.loads(raw)
    again = Snapshot.from_bytes(raw, "e" * 64)
    assert again == s
    assert again.id == "e" * 64
    assert again.datetime == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_a_stored_id_field_is_ignored() -> None:
    raw = json.dumps(
        {"time": "2026-01-01T00:00:00Z", "tree": "ab" * 32, "paths": [], "hostname": "h"}
        | {"id": "forged"}
    )
    assert Snapshot.from_bytes(raw.encode(), "real").id == "real"


GOOD = {"time": "2026-01-01T00:00:00Z", "tree": "ab" * 32, "paths": ["/etc"], "hostname": "h"}


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"time": "x"}',
        b'{"unknown": 1}',
        b"[1]",
        *(
            json.dumps(GOOD | {field: value}).encode()
            for field, value in [
                ("tree", 12345),
                ("tree", "AB" * 32),
                ("tree", "ab" * 31),
                ("paths", "/etc"),
                ("tags", [1]),
                ("hostname", None),
                ("summary", {"files": "many"}),
                ("source", []),
                ("parent", 7),
                ("time", 2026),
            ]
        ),
    ],
)
def test_malformed_snapshot_documents_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptObject, match="snapshots/abc"):
        Snapshot.from_bytes(raw, "abc")


def test_matches_hosts_tags_and_paths() -> None:
    s = snap("a" * 64, "2026-01-01T00:00:00Z", tags=["daily", "db"])
    assert s.matches([], [], [])
    assert s.matches(["h", "other"], [], [])
    assert not s.matches(["other"], [], [])
    assert s.matches([], ["daily"], [])
    assert s.matches([], ["daily,db"], [])
    assert s.matches([], ["weekly", "db"], [])
    assert not s.matches([], ["daily,weekly"], [])
    assert s.matches([], [], ["/data"])
    assert not s.matches([], [], ["/data", "/etc"])
