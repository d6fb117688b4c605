"""The argument handling that runs before Typer sees the command line."""

from __future__ import annotations

import pytest

from safehold.cli.main import hoist_global_options


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
