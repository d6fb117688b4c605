"""wal-push / wal-fetch without a server: idempotent pushes, loud conflicts, quiet misses."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from safehold.repo.repository import Repository
from safehold.sources.postgres.lineage import production_lineage, read_archive
from safehold.sources.postgres.pusher import WalPusher
from safehold.sources.postgres.walnames import (
    format_lsn,
    parse_lsn,
    parse_wal_name,
    read_system_id,
    segment_name,
)
from tests.conftest import CLI

SYSTEM_ID = 7712345678901234567


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    data = tmp_path / "pgdata"
    (data / "global").mkdir(parents=True)
    (data / "pg_wal").mkdir()
    (data / "global" / "pg_control").write_bytes(struct.pack("<Q", SYSTEM_ID) + bytes(100))
    return data


def test_names_and_lsns() -> None:
    assert parse_lsn("16/B374D848") == 0x16B374D848 and format_lsn(0x16B374D848) == "16/B374D848"
    seg = parse_wal_name("00000002000000010000003F")
    assert seg is not None and (seg.kind, seg.timeline, seg.segno()) == ("segment", 2, 256 + 63)
    assert segment_name(2, 256 + 63) == "00000002000000010000003F"
    kinds = [
        "00000002.history",
        "000000010000000000000003.partial",
        "000000010000000000000003.00000028.backup",
    ]
    assert [parse_wal_name(k).kind for k in kinds] == ["history", "partial", "backup"]  # type: ignore[union-attr]
    assert parse_wal_name("RECOVERYXLOG") is None


def test_push_is_idempotent_conflicts_fail_and_fetch_round_trips(cli: CLI, pgdata: Path) -> None:
    cli.init()
    assert read_system_id(str(pgdata)) == str(SYSTEM_ID)
    name = "000000010000000000000001"
    segment = os.urandom(1 << 16) + bytes(1 << 20)
    (pgdata / "pg_wal" / name).write_bytes(segment)
    cli.run("pg", "wal-push", f"pg_wal/{name}", "--pgdata", pgdata)
    again = cli.run("pg", "wal-push", f"pg_wal/{name}", "--pgdata", pgdata)
    assert b"already archived" in again.stderr
    stored = cli.repo / "wal" / str(SYSTEM_ID) / name
    assert stored.stat().st_size < len(segment)  # compressed (and sealed)
    assert segment[:4096] not in stored.read_bytes()

    (pgdata / "pg_wal" / name).write_bytes(segment[:-1] + b"x")
    conflict = cli.run("pg", "wal-push", f"pg_wal/{name}", "--pgdata", pgdata, check=False)
    assert conflict.returncode == 2 and b"different content" in conflict.stderr

    cli.run("pg", "wal-fetch", name, "pg_wal/RECOVERYXLOG", "--pgdata", pgdata)
    assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == segment
    missing = cli.run(
        "pg",
        "wal-fetch",
        "00000002.history",
        "pg_wal/RECOVERYHISTORY",
        "--pgdata",
        pgdata,
        check=False,
    )
    assert missing.returncode not in (0, 1) and missing.returncode < 126  # < 126: not fatal
    assert b"not in the repository" in missing.stderr
    assert not (pgdata / "pg_wal" / "RECOVERYHISTORY").exists()


def test_wal_push_spool_fails_at_once_without_a_spool_or_a_pusher(
    cli: CLI, pgdata: Path, tmp_path: Path
) -> None:
    name = "000000010000000000000001"
    (pgdata / "pg_wal" / name).write_bytes(bytes(1 << 16))
    missing = tmp_path / "old-host-spool"
    started = time.monotonic()
    proc = cli.run("pg", "wal-push", "--spool", missing, f"pg_wal/{name}", check=False)
    assert proc.returncode != 0
    assert proc.stderr.decode().splitlines() == [
        f"safehold: {name} not archived: spool directory {missing} does not exist: "
        "is archive_command meant for this host?"
    ]
    missing.mkdir()  # a spool, but no pusher touching its heartbeat
    proc = cli.run("pg", "wal-push", "--spool", missing, f"pg_wal/{name}", check=False)
    assert proc.returncode != 0 and b"wal-pusher" in proc.stderr and b"is running" in proc.stderr
    assert time.monotonic() - started < 50  # the wait for a mark is 60 s


def test_a_primary_claims_the_timelines_it_archives_others_do_not(
    local_repo: Repository, pgdata: Path, tmp_path: Path
) -> None:
    history = "1\t0/3000000\tno recovery target specified\n"
    (pgdata / "pg_wal" / "00000002.history").write_text(history)
    (pgdata / "pg_wal" / "archive_status").mkdir()
    (pgdata / "pg_wal" / "archive_status" / "00000002.history.ready").touch()
    for primary, spool in ((False, tmp_path / "s1"), (True, tmp_path / "s2")):
        pusher = WalPusher(local_repo, str(pgdata), str(spool), workers=1, primary=primary)
        pusher.scan()
        pusher._pool.shutdown(wait=True)
        assert pusher.pushed == 1
        archive = read_archive(local_repo.store, str(SYSTEM_ID))
        assert archive.claims == ([2] if primary else [])
    lineage = production_lineage(local_repo, str(SYSTEM_ID), [])
    assert lineage.timelines == [1, 2] and lineage.timeline_of_segment(2, 16 << 20) == 1
    assert lineage.timeline_of_segment(3, 16 << 20) == 2
