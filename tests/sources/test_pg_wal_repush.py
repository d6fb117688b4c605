"""A WAL file pushed again, as happens across a failover where every node of a hot standby
archives (issue 17.2): the same bytes are accepted, different bytes are refused with the
archived copy untouched and the refusal reported by `pg status`, a differing `.partial`
(never read by recovery) is refused without holding archiving up, and a history file
that differs is refused and claims nothing. No server needed: the command reads only
pg_control's system identifier and the file."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from safehold.repo.repository import Repository
from safehold.sources.postgres.lineage import read_archive
from safehold.sources.postgres.pusher import WalPusher
from safehold.sources.postgres.spool import ERROR
from safehold.sources.postgres.walarchive import fetch_wal
from safehold.storage import LocalStore
from tests.conftest import CLI, PASSWORD

SYSTEM_ID = "7712345678901234999"
SEGMENT = "000000010000000000000005"
PARTIAL = f"{SEGMENT}.partial"
HISTORY = "00000002.history"


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    data = tmp_path / "pgdata"
    (data / "global").mkdir(parents=True)
    (data / "pg_wal" / "archive_status").mkdir(parents=True)
    (data / "global" / "pg_control").write_bytes(struct.pack("<Q", int(SYSTEM_ID)) + bytes(100))
    return data


def push(cli: CLI, pgdata: Path, name: str, data: bytes, *flags: str) -> Any:
    (pgdata / "pg_wal" / name).write_bytes(data)
    return cli.run("pg", "wal-push", f"pg_wal/{name}", "--pgdata", pgdata, *flags, check=False)


def archived(cli: CLI, name: str) -> bytes:
    return fetch_wal(Repository.open(LocalStore(cli.repo), PASSWORD), SYSTEM_ID, name)


def pg_status(cli: CLI) -> dict[str, Any]:
    [status] = json.loads(cli.run("--json", "pg", "status").stdout)
    assert status["system_id"] == SYSTEM_ID
    return status  # type: ignore[no-any-return]


def test_identical_pushes_are_accepted_for_every_kind(cli: CLI, pgdata: Path) -> None:
    cli.init()
    files = {
        SEGMENT: os.urandom(4096) + bytes(1 << 16),
        PARTIAL: os.urandom(4096),
        HISTORY: b"1\t0/5000A28\tno recovery target specified\n",
    }
    for name, data in files.items():
        assert push(cli, pgdata, name, data, "--primary").returncode == 0
    for name, data in files.items():  # the other node pushes its copy of the same file
        again = push(cli, pgdata, name, data, "--primary")
        assert again.returncode == 0, again.stderr
        assert again.stderr.decode() == f"safehold: {name} was already archived (same content)\n"
        assert archived(cli, name) == data
    status = pg_status(cli)
    assert status["refused"] == [] and status["warnings"] == []
    assert status["timelines"] == [1, 2] and status["lineage"] == [1, 2]


def test_a_different_segment_is_refused_kept_and_reported(cli: CLI, pgdata: Path) -> None:
    cli.init()
    original = os.urandom(1 << 16)
    assert push(cli, pgdata, SEGMENT, original).returncode == 0
    other = original[:-1] + bytes([original[-1] ^ 1])
    for _ in range(2):  # PostgreSQL retries a failed archive_command
        refused = push(cli, pgdata, SEGMENT, other, "--quiet")
        assert refused.returncode == 2
        lines = refused.stderr.decode().splitlines()
        assert len(lines) == 1 and "already archived with different content" in lines[0], lines
    assert archived(cli, SEGMENT) == original
    status = pg_status(cli)
    [refusal] = status["refused"]  # recorded once, however often it is retried
    assert refusal["name"] == SEGMENT and refusal["size"] == len(other) and refusal["host"]
    assert status["wal_files"] == 1 and status["gaps"] == []
    [warning] = status["warnings"]
    assert f"a push of {SEGMENT}" in warning and "archives nothing after it" in warning
    assert status["archiving_stuck_on"] == SEGMENT  # nothing newer archived since
    text = cli.run("pg", "status").stdout.decode()
    assert f"WARNING: a push of {SEGMENT} from host" in text
    assert f"PROBLEM: archiving is stuck on {SEGMENT}" in text
    assert push(cli, pgdata, "000000010000000000000006", os.urandom(512)).returncode == 0
    status = pg_status(cli)  # production moved on: whoever was refused is not production
    assert status["archiving_stuck_on"] is None and len(status["refused"]) == 1


def test_a_different_partial_is_refused_but_archiving_goes_on(cli: CLI, pgdata: Path) -> None:
    cli.init()
    original = os.urandom(8192)
    assert push(cli, pgdata, PARTIAL, original).returncode == 0
    other = push(cli, pgdata, PARTIAL, os.urandom(8192), "--quiet")
    assert other.returncode == 0  # PostgreSQL goes on to the new timeline's segments
    assert "differs from the archived copy, which is kept" in other.stderr.decode()
    assert archived(cli, PARTIAL) == original
    [refusal] = pg_status(cli)["refused"]
    assert refusal["name"] == PARTIAL


def test_a_history_file_claims_only_from_the_promoted_node_and_a_different_one_is_refused(
    cli: CLI, pgdata: Path
) -> None:
    cli.init()
    original = b"1\t0/5000A28\tno recovery target specified\n"
    (pgdata / "standby.signal").touch()  # a replica re-archiving it (archive_mode always)
    assert push(cli, pgdata, HISTORY, original, "--primary").returncode == 0
    assert pg_status(cli)["lineage_recorded"] is False  # only the promoted node claims
    (pgdata / "standby.signal").unlink()
    refused = push(cli, pgdata, HISTORY, b"1\t0/6000000\tother\n", "--primary")
    assert refused.returncode == 2
    assert archived(cli, HISTORY) == original
    status = pg_status(cli)
    assert status["lineage_recorded"] is False  # no claim made from the refused file
    assert [r["name"] for r in status["refused"]] == [HISTORY]


def test_the_pusher_reports_a_refusal_to_the_archive_command(
    local_repo: Repository, pgdata: Path, tmp_path: Path
) -> None:
    original = os.urandom(1 << 12)
    (pgdata / "pg_wal" / SEGMENT).write_bytes(original)
    (pgdata / "pg_wal" / "archive_status" / f"{SEGMENT}.ready").touch()
    spool = tmp_path / "spool"
    pusher = WalPusher(local_repo, str(pgdata), str(spool), workers=1)
    pusher.scan()
    pusher._pool.shutdown(wait=True)
    assert pusher.pushed == 1
    (pgdata / "pg_wal" / SEGMENT).write_bytes(os.urandom(1 << 12))
    (spool / f"{SEGMENT}.ok").unlink()
    pusher = WalPusher(local_repo, str(pgdata), str(spool), workers=1)
    pusher.scan()
    pusher._pool.shutdown(wait=True)
    assert pusher.pushed == 0
    assert "different content" in (spool / f"{SEGMENT}{ERROR}").read_text()
    [refusal] = read_archive(local_repo.store, SYSTEM_ID).refusals
    assert refusal.startswith(f"wal/{SYSTEM_ID}/{SEGMENT}.") and refusal.endswith(".refused")
