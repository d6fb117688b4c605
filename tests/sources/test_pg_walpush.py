"""wal-push / wal-fetch without a server: idempotent pushes, loud conflicts, quiet misses;
as PostgreSQL calls them (cli/wal_commands.py) they never import Typer, and both ways
store, fetch and fail alike."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
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
SEGMENT = "000000010000000000000001"


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


# where run() went: its exit code, and whether Typer was imported on the way
PROBE = """
import json, sys
from safehold.cli.main import run
try:
    run(sys.argv[1:])
except SystemExit as exc:
    print()
    print(json.dumps([exc.code, "typer" in sys.modules]))
"""


def probe(cli: CLI, *args: str | Path) -> tuple[int, bool, str]:
    """(exit code, Typer imported, stderr) of ``safehold ARGS``."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, env=cli.env
    )
    code, typer = json.loads(proc.stdout.splitlines()[-1])  # after any help text
    return code or 0, typer, proc.stderr.decode()


@pytest.mark.parametrize(
    ("typer_expected", "extra"),
    [
        (False, []),
        (False, ["--quiet", "--password-file", "{password}"]),
        (True, ["--connections", "1"]),  # an option the fast path leaves to Typer
        (True, ["--json"]),
    ],
)
def test_the_plain_wal_commands_skip_typer_and_both_ways_agree(
    cli: CLI, pgdata: Path, tmp_path: Path, typer_expected: bool, extra: list[str]
) -> None:
    cli.init()
    (pgdata / "pg_wal" / SEGMENT).write_bytes(bytes(range(256)) * 256)
    password = tmp_path / "password"
    password.write_text(cli.env["SAFEHOLD_PASSWORD"])
    extra = [a.replace("{password}", str(password)) for a in extra]
    push = probe(cli, *extra, "pg", "wal-push", f"pg_wal/{SEGMENT}", "--pgdata", pgdata)
    assert push[:2] == (0, typer_expected), push
    fetched = probe(cli, *extra, "pg", "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG", "-D", pgdata)
    assert fetched[:2] == (0, typer_expected), fetched
    assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == (
        pgdata / "pg_wal" / SEGMENT
    ).read_bytes()
    missing = probe(
        cli, *extra, "pg", "wal-fetch", "00000002.history", "pg_wal/RECOVERYHISTORY",
        "--pgdata", pgdata,
    )  # fmt: skip
    assert missing[1] == typer_expected
    assert missing[0] not in (0, 1) and missing[0] < 126, missing  # < 126: not fatal
    assert missing[2].count("\n") == 1 and "not in the repository" in missing[2], missing
    (pgdata / "pg_wal" / SEGMENT).write_bytes(b"other content")
    conflict = probe(cli, *extra, "pg", "wal-push", f"pg_wal/{SEGMENT}", "--pgdata", pgdata)
    assert conflict[0] == 2 and "different content" in conflict[2], conflict


def test_wal_command_help_and_spool_go_through_typer(cli: CLI, tmp_path: Path) -> None:
    assert probe(cli, "pg", "wal-fetch", "--help")[:2] == (0, True)
    spool = probe(cli, "pg", "wal-push", "--spool", tmp_path / "none", "pg_wal/x")
    assert spool[1] is True and spool[0] != 0 and "spool directory" in spool[2]
