"""backup --dry-run, --files-from (and -verbatim, -raw), --iexclude as a user runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import CLI
from tests.e2e.test_cli import backup, json_lines, ls_paths, make_tree, snapshots
from tests.e2e.test_repair_snapshots_cli import listing
from tests.e2e.test_restic_cmds_cli import fail_line


def dry_backup(cli: CLI, *args: str | Path) -> dict[str, Any]:
    summary = json_lines(cli.run("--json", "backup", *args))[-1]
    assert summary["message_type"] == "summary" and summary["dry_run"] is True
    assert summary["snapshot_id"] is None
    return summary


def test_dry_run_reads_everything_and_writes_nothing(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    cli.init()
    before = listing(cli.repo)
    dry = dry_backup(cli, data, "--dry-run")
    assert listing(cli.repo) == before and snapshots(cli) == []
    real = backup(cli, data)
    for field in ("files_new", "dirs_new", "total_files_processed", "total_bytes_processed"):
        assert dry[field] == real[field], field
    assert dry["data_added"] >= real["total_bytes_processed"] // 2  # raw, before compression

    (data / "added.txt").write_text("one more")
    again = dry_backup(cli, data, "-n")  # compares with the parent as a real run does
    assert (again["files_new"], again["files_unmodified"]) == (1, real["files_new"])
    text = cli.run("backup", data, "--dry-run").stdout.decode()
    assert "dry run: nothing saved" in text and "snapshot " not in text
    assert len(snapshots(cli)) == 1
    assert "--dry-run is for files and --stdin" in fail_line(
        cli, "backup", "--dry-run", "--stdin-from-command", "echo hi"
    )


def test_files_from_forms_and_iexclude(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    odd = tmp_path / "data" / "  spaced name "
    odd.write_text("kept verbatim")
    cli.init()

    listed = tmp_path / "list.txt"
    listed.write_text(f"# a comment\n\n  {data / 'hello.*'}  \n{data / 'sub' / 'deeper'}\n")
    s1 = backup(cli, "--files-from", listed, "--iexclude", "*.BIN")
    assert snapshots(cli)[-1]["paths"] == [str(data / "hello.txt"), str(data / "sub" / "deeper")]
    assert str(data / "sub" / "deeper" / "zeros.bin") not in ls_paths(cli, s1["snapshot_id"])

    verbatim = tmp_path / "verbatim.txt"
    verbatim.write_text(f"{odd}\n{data / 'empty'}\n")
    backup(cli, "--files-from-verbatim", verbatim)
    assert snapshots(cli)[-1]["paths"] == [str(odd), str(data / "empty")]  # sorted

    raw = tmp_path / "raw.bin"
    raw.write_bytes(f"{data / 'link'}\0{odd}\0".encode())
    backup(cli, "--files-from-raw", raw, data / "sub" / "random.bin")
    assert snapshots(cli)[-1]["paths"] == [
        str(odd),
        str(data / "link"),
        str(data / "sub" / "random.bin"),
    ]

    # standard input, and a glob matching nothing names itself as missing (exit 3)
    proc = cli.run(
        "backup",
        "--files-from",
        "-",
        input=f"{data / 'nothing*'}\n{data / 'empty'}\n".encode(),
        check=False,
    )
    assert proc.returncode == 3 and str(data / "nothing*") in proc.stderr.decode()
    assert "cannot read /nonexistent.txt" in fail_line(
        cli, "backup", "--files-from", "/nonexistent.txt"
    )
