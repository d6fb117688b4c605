"""The retention hook: WAL below the oldest kept base backup goes, nothing a kept one needs."""

from __future__ import annotations

from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.postgres.retention import unneeded_wal
from safehold.sources.postgres.walarchive import push_wal


def _backup(system_id: str, start_lsn: str, timeline: int = 1) -> Snapshot:
    return Snapshot(
        time="2026-11-26T12:00:00+00:00",
        tree="0" * 64,
        paths=["/pg"],
        hostname="h",
        source={
            "kind": "postgres",
            "system_id": system_id,
            "start_lsn": start_lsn,
            "stop_lsn": start_lsn,
            "timeline": timeline,
            "wal_segment_size": 16 << 20,
        },
    )


def test_unneeded_wal(memory_repo: Repository) -> None:
    names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003.00000028.backup",
        "000000010000000000000003",
        "000000010000000000000004.partial",
        "00000002.history",
        "000000020000000000000004",
        "000000020000000000000005",
    ]
    for name in names:
        push_wal(memory_repo, "111", name, name.encode())
    push_wal(memory_repo, "222", "000000010000000000000001", b"other cluster")

    # the oldest kept backup starts in segment 3: 1 and 2 go; history files never do
    kept = [_backup("111", "0/3000028"), _backup("111", "0/5000060", timeline=2)]
    assert unneeded_wal(memory_repo, kept) == [
        "wal/111/000000010000000000000001",
        "wal/111/000000010000000000000002",
    ]
    # only the timeline-2 backup kept: everything below segment 5 but history goes
    assert unneeded_wal(memory_repo, kept[1:]) == [
        f"wal/111/{n}"
        for n in sorted(names)
        if n != "00000002.history" and n[8:24] < "0000000000000005"
    ]
    # a cluster without a kept backup keeps all its WAL (a backup may be running)
    assert unneeded_wal(memory_repo, []) == []
