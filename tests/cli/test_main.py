"""The argument handling that runs before Typer sees the command line."""

from __future__ import annotations

import importlib

import pytest

from safehold.cli.main import COMMAND_MODULES, _command_name, hoist_global_options


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["snapshots", "--json"], ["--json", "snapshots"]),
        (
            ["backup", "/d", "-r", "/repo", "--tag", "x"],
            ["-r", "/repo", "backup", "/d", "--tag", "x"],
        ),
        (
            ["restore", "latest", "--repo=/r", "-t", "/t"],
            ["--repo=/r", "restore", "latest", "-t", "/t"],
        ),
        (
            ["-q", "ls", "latest", "--password-file", "pw"],
            ["-q", "--password-file", "pw", "ls", "latest"],
        ),
        # after "--" everything is an argument, even what looks like a global option
        (["backup", "--", "--json", "-r"], ["backup", "--", "--json", "-r"]),
        # an option missing its value is left for Typer to report
        (["snapshots", "--repo"], ["snapshots", "--repo"]),
    ],
)
def test_global_options_move_in_front_of_the_command(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-r", "/repo", "--json", "backup", "/d"], "backup"),
        (["--repo=/r", "-q", "key", "list"], "key"),
        (["--password-file", "pw", "restore", "latest"], "restore"),
        (["--version"], None),
        ([], None),
    ],
)
def test_the_command_is_found_after_the_global_options(
    args: list[str], expected: str | None
) -> None:
    assert _command_name(args) == expected


def test_every_command_has_its_module() -> None:
    """A command missing from the table would be found only through a full import."""
    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"safehold.cli.{module}")
    from safehold.cli.app import app

    commands = {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}
    names = commands | {g.name for g in app.registered_groups}
    assert names == set(COMMAND_MODULES)
