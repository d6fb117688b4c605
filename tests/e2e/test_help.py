"""Help, counts and units as a new user reads them (issue 14, item 12), and completion."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from rich.console import Console

from safehold.cli.output import BarProgress
from tests.conftest import CLI, SAFEHOLD

PANELS = ["Repository", "Backup and restore", "Browse", "Maintenance", "Databases", "Automation"]


def help_text(*args: str, columns: int = 200) -> str:
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run([*SAFEHOLD, *args, "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_commands_are_grouped_in_order_and_descriptions_do_not_break() -> None:
    text = help_text()
    panels = re.findall(r"^╭─ (.+?) ─", text, re.M)
    # a command added without a panel goes last, under "More commands"
    assert panels[: len(PANELS) + 1] == ["Options", *PANELS], panels
    assert panels[len(PANELS) + 1 :] in ([], ["More commands"]), panels
    repository = text.split("╭─ Repository")[1].split("╰")[0]
    assert re.search(r"^│ init ", repository, re.M), "init comes first, with the repository"
    # the daemon's description is one paragraph: wide enough, it is one line
    (daemon,) = [line for line in text.splitlines() if line.startswith("│ daemon ")]
    assert "the log archivers, the protection status" in daemon
    status = help_text("status")
    assert "5 at least one is not (a source never backed up" in status


def test_help_leaves_the_commands_heavy_libraries_unimported() -> None:
    """`safehold --help` lists every command without importing what only their work needs
    (the policy's pydantic models, database clients, the web server, FUSE's ctypes)."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        "sys.argv = ['safehold', '--help']\n"
        "from safehold.cli.main import run\n"
        "run()\n"
    )
    proc = subprocess.run([SAFEHOLD[0], "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0 and "Automation" in proc.stdout, proc.stderr
    imported = {name.split(".")[0] for name in json.loads(proc.stderr.splitlines()[-1])}
    heavy = {"pydantic", "psycopg", "fastapi", "uvicorn", "ctypes", "boto3"}
    assert imported & heavy == set()


def test_a_command_help_names_the_global_options_that_may_follow() -> None:
    for args in (["backup"], ["pg", "backup"], ["status"]):
        text = " ".join(help_text(*args).split())
        assert "Global options may also follow the command: --repo/-r" in text, args


def test_counts_agree_and_skipped_entries_are_counted(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "one.txt").write_text("one\n")
    cli.init()
    backup = cli.run("backup", data).stdout.decode()
    assert "Processed 1 file," in backup, backup
    target = tmp_path / "restore"
    first = cli.run("restore", "latest", "--target", target).stdout.decode()
    assert ": 1 file, " in first and "entry skipped" not in first, first
    again = cli.run("restore", "latest", "--target", target, "--overwrite", "never").stdout
    assert "; 1 entry skipped (already there: --overwrite never)" in again.decode()
    check = cli.run("check").stdout.decode()
    assert "checked 1 snapshot, " in check and "0 warnings" in check, check


def test_the_progress_bar_counts_bytes_in_binary_units_as_the_summaries() -> None:
    bar = BarProgress("backup")
    bar.set_total(2, 3 << 30)
    bar.advance(1, 3 << 29)
    console = Console(width=200, record=True, force_terminal=False)
    console.print(bar._bar.make_tasks_table(bar._bar.tasks))  # the bar as it would be drawn
    drawn = console.export_text()
    assert "1.5/3.0 GiB" in drawn and " GB" not in drawn, drawn


def test_shell_completion_is_offered() -> None:
    # run from bash, as a user does: Typer finds the shell among the parent processes (a
    # shell name after the option is not read), and a test runner may have none; `; exit`
    # keeps bash from replacing itself with the command
    command = shlex.join([*SAFEHOLD, "--show-completion"])
    shown = subprocess.run(["bash", "-c", f"{command}; exit $?"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "_SAFEHOLD_COMPLETE=complete_bash" in shown.stdout
    env = {**os.environ, "COMP_WORDS": "safehold res", "COMP_CWORD": "1"}
    env["_SAFEHOLD_COMPLETE"] = "complete_bash"
    words = subprocess.run(SAFEHOLD, capture_output=True, text=True, env=env).stdout.split()
    assert words == ["restore"], words
