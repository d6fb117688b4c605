"""`backup --stdin-from-command` and `restore --stdout-to-command` as a user runs them."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from tests.conftest import CLI

PY = shlex.quote(sys.executable)


def _snapshots(cli: CLI) -> list[dict[str, object]]:
    result: list[dict[str, object]] = json.loads(cli.run("snapshots", "--json").stdout)
    return result


def test_round_trip_through_commands(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    writer = f"{PY} -c 'import sys; sys.stdout.write(\"row\\n\" * 200000)'"
    proc = cli.run(
        "backup", "--stdin-from-command", writer, "--stdin-filename", "mongo/all.archive", "--json"
    )
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["total_bytes_processed"] == 800000
    (snap,) = _snapshots(cli)
    assert snap["paths"] == ["/mongo/all.archive"]
    assert snap["source"]["kind"] == "command"  # type: ignore[index]
    out = tmp_path / "restored"
    cli.run("restore", "latest", "--stdout-to-command", f"sh -c 'cat > {out}'")
    assert out.read_bytes() == b"row\n" * 200000
    proc = cli.run("dump", "latest", "/mongo/all.archive")
    assert proc.stdout == b"row\n" * 200000


def test_failing_command_exits_1_and_records_nothing(cli: CLI) -> None:
    cli.init()
    for command, expected in [
        ("sh -c 'exit 3'", "safehold: sh exited with code 3: (no error output)"),
        (
            "sh -c 'seq 1 300000; echo connection reset >&2; exit 7'",
            "safehold: sh exited with code 7: connection reset",
        ),
    ]:
        proc = cli.run("backup", "--stdin-from-command", command, check=False)
        assert proc.returncode == 1
        assert proc.stderr.decode().strip().splitlines() == [expected]
    assert _snapshots(cli) == []
    cli.run("check")


def test_restore_into_failing_command_exits_non_zero(cli: CLI) -> None:
    cli.init()
    cli.run("backup", "--stdin-from-command", "seq 1 100000")
    proc = cli.run("restore", "latest", "--stdout-to-command", "sh -c 'exit 9'", check=False)
    assert proc.returncode == 1
    assert "sh exited with code 9" in proc.stderr.decode()
    proc = cli.run("restore", "latest", check=False)
    assert proc.returncode == 1
    assert "give either --target or --stdout-to-command" in proc.stderr.decode()
    proc = cli.run("backup", "--stdin-from-command", "seq 3", "/etc", check=False)
    assert proc.returncode == 1
