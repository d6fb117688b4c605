"""`safehold check` and `safehold repair index` as a user runs them: exit codes and output."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import CLI
from tests.e2e.test_cli import backup, json_doc, random_bytes
from tests.e2e.test_faults import one_line_error, packs


def backed_up(cli: CLI, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_bytes(random_bytes(300_000, seed=1))
    (data / "sub" / "b.txt").write_text("hello\n")
    cli.init()
    backup(cli, data)
    return data


def problem_lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    return [line for line in err.splitlines() if line.strip()]


def test_clean_check_json_and_text(cli: CLI, tmp_path: Path) -> None:
    backed_up(cli, tmp_path)
    proc = cli.run("check", "--read-data")
    assert problem_lines(proc) == []
    assert "no errors, 0 warnings" in proc.stdout.decode()
    doc = json_doc(cli.run("check", "--read-data-subset", "1/1", "--json"))
    assert doc["ok"] is True and doc["errors"] == [] and doc["warnings"] == []
    assert doc["snapshots"] == 1 and doc["packs_read"] == doc["packs"] >= 2


def test_damaged_pack_exits_1_and_names_the_file(cli: CLI, tmp_path: Path) -> None:
    data = backed_up(cli, tmp_path)
    victim = max(packs(cli.repo), key=lambda p: p.stat().st_size)  # a.bin's data
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    assert cli.run("check").returncode == 0  # sizes are intact: only reading finds it

    proc = cli.run("check", "--read-data", check=False)
    assert proc.returncode == 1
    lines = problem_lines(proc)
    assert lines and all(line.startswith("error: data/") for line in lines), lines
    assert any(str(data / "a.bin") in line for line in lines), lines

    proc = cli.run("--json", "check", "--read-data", check=False)
    assert proc.returncode == 1
    doc = json_doc(proc)
    assert doc["ok"] is False and doc["warnings"] == []
    assert {"severity", "subject", "message", "snapshots", "paths"} <= doc["errors"][0].keys()
    assert any(str(data / "a.bin") in e["paths"] for e in doc["errors"])


def test_lost_index_repaired(cli: CLI, tmp_path: Path) -> None:
    backed_up(cli, tmp_path)
    for index_file in (cli.repo / "index").iterdir():
        index_file.unlink()
    proc = cli.run("--json", "check", check=False)
    assert proc.returncode == 1
    doc = json_doc(proc)
    assert doc["errors"] and len(doc["warnings"]) == len(packs(cli.repo))

    repaired = cli.run("repair", "index")
    assert "indexed" in repaired.stdout.decode()
    assert len(list((cli.repo / "index").iterdir())) == 1
    doc = json_doc(cli.run("--json", "check", "--read-data"))
    assert doc["ok"] is True and doc["warnings"] == []


def test_warnings_alone_exit_0(cli: CLI, tmp_path: Path) -> None:
    backed_up(cli, tmp_path)
    some_pack = next(iter(packs(cli.repo)))
    stray = cli.repo / "data" / "ff" / ("ff" * 32)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(some_pack.read_bytes())
    proc = cli.run("check")
    lines = problem_lines(proc)
    assert (
        len(lines) == 1 and lines[0].startswith("warning: data/ff/") and "unreferenced" in lines[0]
    )


def test_bad_options_one_line(cli: CLI, tmp_path: Path) -> None:
    backed_up(cli, tmp_path)
    line = one_line_error(cli.run("check", "--read-data-subset", "0/7", check=False), 1)
    assert "invalid read-data subset" in line
    line = one_line_error(
        cli.run("check", "--read-data", "--read-data-subset", "1/2", check=False), 1
    )
    assert "not both" in line
