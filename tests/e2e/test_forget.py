"""``safehold forget`` as a user runs it: by id, by policy, dry runs, and refusals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.e2e.test_cli import backup, json_doc, restored, snapshots


@dataclass
class History:
    """Five snapshots of one directory: h1 over three days (the first tagged x), one of h2."""

    cli: CLI
    data: Path
    ids: dict[str, str]  # name -> snapshot id

    def remaining(self) -> list[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id[s["id"]] for s in snapshots(self.cli)]


PLAN = [
    ("s1", "2024-01-01T10:00:00Z", "h1", "x"),
    ("s2", "2024-01-01T20:00:00Z", "h1", ""),
    ("s3", "2024-01-02T10:00:00Z", "h1", ""),
    ("s4", "2024-01-03T10:00:00Z", "h1", ""),
    ("s5", "2024-01-03T12:00:00Z", "h2", ""),
]


@pytest.fixture
def history(cli: CLI, tmp_path: Path) -> History:
    data = tmp_path / "data"
    data.mkdir()
    (data / "same.txt").write_text("in every snapshot\n")
    cli.init()
    ids = {}
    for name, time, host, tag in PLAN:
        (data / "version.txt").write_text(f"{name}\n")
        tags = ("--tag", tag) if tag else ()
        ids[name] = backup(cli, data, "--time", time, "--host", host, *tags)["snapshot_id"]
    return History(cli, data, ids)


def forget_json(history: History, *args: str) -> list[dict[str, Any]]:
    groups = json_doc(history.cli.run("--json", "forget", *args))
    assert isinstance(groups, list)
    return groups


def names(history: History, docs: list[dict[str, Any]]) -> list[str]:
    by_id = {v: k for k, v in history.ids.items()}
    return [by_id[d["id"]] for d in docs]


def test_dry_run_lists_every_snapshot_with_reasons_and_removes_nothing(history: History) -> None:
    table = history.cli.run("forget", "--keep-daily", "2", "--dry-run").stdout.decode()
    assert "snapshots of host h1; paths " + str(history.data) in table
    assert "snapshots of host h2; paths " + str(history.data) in table
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    ids = history.ids
    assert " remove" in rows[ids["s1"][:8]] and " remove" in rows[ids["s2"][:8]]
    assert "keep    daily snapshot" in rows[ids["s3"][:8]]
    assert "keep    daily snapshot" in rows[ids["s4"][:8]]
    assert "keep    daily snapshot" in rows[ids["s5"][:8]]
    assert "would remove 2 snapshots (dry run: nothing removed)" in table
    assert history.remaining() == ["s1", "s2", "s3", "s4", "s5"]

    groups = forget_json(history, "--keep-daily", "2", "--keep-within", "1d", "--dry-run")
    assert [g["group_key"] for g in groups] == [
        {"hostname": "h1", "paths": [str(history.data)], "tags": None},
        {"hostname": "h2", "paths": [str(history.data)], "tags": None},
    ]
    assert names(history, groups[0]["keep"]) == ["s4", "s3"]
    assert [k["reasons"] for k in groups[0]["keep"]] == [
        ["within 1d", "daily snapshot"],
        ["daily snapshot"],
    ]
    assert names(history, groups[0]["remove"]) == ["s2", "s1"]
    assert groups[0]["keep"][0]["hostname"] == "h1"  # the same documents as `snapshots`
    assert names(history, groups[1]["keep"]) == ["s5"] and groups[1]["remove"] == []
    assert history.remaining() == ["s1", "s2", "s3", "s4", "s5"]


def test_policy_removes_the_right_snapshots_and_kept_ones_restore(
    history: History, tmp_path: Path
) -> None:
    groups = forget_json(history, "--keep-daily", "1", "--keep-tag", "x")
    assert names(history, groups[0]["keep"]) == ["s4", "s1"]
    assert [k["reasons"] for k in groups[0]["keep"]] == [["daily snapshot"], ["tag x"]]
    assert names(history, groups[0]["remove"]) == ["s3", "s2"]
    assert history.remaining() == ["s1", "s4", "s5"]

    # forget removes the snapshot records only: every kept snapshot restores whole,
    # though the removed ones shared its data
    for name in ("s1", "s4", "s5"):
        target = tmp_path / f"restore-{name}"
        history.cli.run("restore", history.ids[name][:8], "--target", target)
        copy = restored(target, history.data)
        assert (copy / "version.txt").read_text() == f"{name}\n"
        assert (copy / "same.txt").read_text() == "in every snapshot\n"

    again = history.cli.run("forget", "--keep-daily", "1", "--keep-tag", "x").stdout.decode()
    assert "removed 0 snapshots" in again and "`safehold prune`" in again


def test_filters_and_group_by(history: History) -> None:
    groups = forget_json(history, "--keep-last", "1", "--host", "h2", "--dry-run")
    assert len(groups) == 1 and names(history, groups[0]["keep"]) == ["s5"]

    groups = forget_json(history, "--keep-last", "2", "--group-by", "tags", "--dry-run")
    assert [g["group_key"] for g in groups] == [
        {"hostname": None, "paths": None, "tags": ["x"]},
        {"hostname": None, "paths": None, "tags": []},
    ]
    assert names(history, groups[1]["keep"]) == ["s5", "s4"]

    out = history.cli.run("forget", "--keep-last", "1", "--host", "h1", "--group-by", "")
    assert "snapshots\n" in out.stdout.decode()
    assert history.remaining() == ["s4", "s5"]  # h2's snapshot was not considered


def test_forget_by_id(history: History) -> None:
    ids = history.ids
    out = history.cli.run("forget", ids["s2"][:8], ids["s3"]).stdout.decode()
    assert "removed 2 snapshots" in out
    assert history.remaining() == ["s1", "s4", "s5"]

    groups = forget_json(history, "latest", "--host", "h1", "--dry-run")
    assert groups == [{"group_key": None, "keep": [], "remove": groups[0]["remove"]}]
    assert names(history, groups[0]["remove"]) == ["s4"]
    assert history.remaining() == ["s1", "s4", "s5"]

    gone = history.cli.run("forget", ids["s2"][:8], check=False)
    assert gone.returncode == 1
    assert gone.stderr.decode() == f"safehold: No snapshot matches {ids['s2'][:8]!r}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no policy given: use --keep-last, --keep-daily, --keep-within, ... "),
        (("--keep-daily", "0", "--dry-run"), "refusing to remove every snapshot"),
        (("--keep-within", "30x"), "invalid duration '30x': unknown unit 'x'"),
        (("--keep-last", "-2"), "invalid count '-2'"),
        (("--keep-last", "1", "--group-by", "user"), "cannot group by user"),
        (("--keep-last", "1", "0123abcd"), "give snapshot ids or a --keep-* policy, not both"),
    ],
)
def test_refusals_are_one_line_and_remove_nothing(
    history: History, args: tuple[str, ...], message: str
) -> None:
    proc = history.cli.run("forget", *args, check=False)
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert stderr.startswith("safehold: ") and stderr.count("\n") == 1
    assert message in stderr
    assert proc.stdout == b""
    assert history.remaining() == ["s1", "s2", "s3", "s4", "s5"]


def test_json_refusal_is_still_one_line(history: History) -> None:
    proc = history.cli.run("--json", "forget", check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert "refusing to remove every snapshot" in proc.stderr.decode()
    assert json.loads(history.cli.run("--json", "snapshots").stdout)[0]["id"] == history.ids["s1"]
