"""`dump` of directories as tar and zip streams, and restore's --exclude and --dry-run,
as a user runs them, against one module-wide repository."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.e2e.test_cli import backup, json_doc, make_cli, make_tree, restored, tree_state
from tests.e2e.test_restic_cmds_cli import fail_line


@dataclass(frozen=True)
class Repo:
    cli: CLI
    data: Path
    snapshot: str
    state: dict[str, tuple[object, ...]]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    base = tmp_path_factory.mktemp("dump")
    cli = make_cli(base)
    data = make_tree(base / "data")
    os.mkfifo(data / "fifo")
    cli.init()
    summary = backup(cli, data)
    (data / "fifo").unlink()  # tree_state below compares what tar and zip can both hold
    return Repo(cli, data, summary["snapshot_id"], tree_state(data))


def member_name(path: Path) -> str:
    return str(path).lstrip("/")


def test_dump_directory_as_tar_keeps_metadata(repo: Repo, tmp_path: Path) -> None:
    tar_bytes = repo.cli.run("dump", repo.snapshot[:8], repo.data).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members[member_name(repo.data)].isdir()
    hello = members[member_name(repo.data / "hello.txt")]
    st = (repo.data / "hello.txt").stat()
    assert stat.S_IMODE(hello.mode) == 0o640 and hello.size == st.st_size
    assert (hello.uid, hello.gid) == (st.st_uid, st.st_gid) and hello.uname
    link = members[member_name(repo.data / "link")]
    assert link.issym() and link.linkname == "hello.txt"
    hard = members[member_name(repo.data / "sub" / "hardlink.txt")]
    assert hard.islnk() and hard.linkname == member_name(repo.data / "hello.txt")
    assert members[member_name(repo.data / "fifo")].isfifo()

    # GNU tar, fed from the pipe, rebuilds the same tree: contents, modes, mtimes to the ns
    target = tmp_path / "x"
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", target], input=tar_bytes, check=True)
    (restored(target, repo.data) / "fifo").unlink()
    assert tree_state(restored(target, repo.data)) == repo.state
    copy = restored(target, repo.data)
    assert (copy / "hello.txt").stat().st_ino == (copy / "sub" / "hardlink.txt").stat().st_ino


def test_dump_directory_as_zip(repo: Repo, tmp_path: Path) -> None:
    target = tmp_path / "out.zip"
    doc = json_doc(
        repo.cli.run("--json", "dump", "latest", repo.data / "sub", "-a", "zip", "-t", target)
    )
    assert doc["format"] == "zip" and doc["target"] == str(target)
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        infos = {i.filename: i for i in archive.infolist()}
        sub = repo.data / "sub"
        assert set(infos) == {
            member_name(sub) + "/",
            member_name(sub / "random.bin"),
            member_name(sub / "hardlink.txt"),
            member_name(sub / "deeper") + "/",
            member_name(sub / "deeper" / "zeros.bin"),
            member_name(sub / "deeper" / "ünïcødé name.txt"),
        }
        for name, info in infos.items():
            path = Path("/" + name.rstrip("/"))
            assert info.external_attr >> 16 == path.lstat().st_mode, name
            if not info.is_dir():
                assert archive.read(info) == path.read_bytes(), name
    assert doc["files"] == 4 and doc["bytes"] == sum(
        p.stat().st_size for p in (repo.data / "sub").rglob("*") if p.is_file()
    )
    with zipfile.ZipFile(io.BytesIO(repo.cli.run("dump", "latest", "/", "-a", "zip").stdout)) as z:
        link = z.getinfo(member_name(repo.data / "link"))
        assert stat.S_ISLNK(link.external_attr >> 16) and z.read(link) == b"hello.txt"


def test_dump_file_and_errors(repo: Repo) -> None:
    cli = repo.cli
    assert cli.run("dump", "latest", repo.data / "hello.txt").stdout == b"hello world\n"
    assert "--archive must be one of tar, zip" in fail_line(
        cli, "dump", "latest", repo.data, "-a", "rar"
    )
    assert "is not in snapshot" in fail_line(cli, "dump", "latest", repo.data / "nope")
    assert "No snapshot matches 'feed'" in fail_line(cli, "dump", "feed", repo.data)


def restored_names(target: Path, data: Path) -> set[str]:
    root = restored(target, data)
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_restore_exclude_and_case_blind_forms(repo: Repo, tmp_path: Path) -> None:
    cli, data = repo.cli, repo.data
    cli.run("restore", repo.snapshot, "-t", tmp_path / "a", "-e", "*.bin", "--iexclude", "HELLO.*")
    assert restored_names(tmp_path / "a", data) == {
        "empty",
        "fifo",
        "link",
        "sub",
        "sub/deeper",
        "sub/deeper/ünïcødé name.txt",
        "sub/hardlink.txt",  # its first name was excluded: restored as a file of its own
    }
    assert (restored(tmp_path / "a", data) / "sub" / "hardlink.txt").read_text() == "hello world\n"
    # a path pattern excludes the directory with everything below it; wins over --include
    cli.run("restore", "latest", "-t", tmp_path / "b", "-i", data / "sub", "-e", "sub/deeper")
    assert restored_names(tmp_path / "b", data) == {"sub", "sub/random.bin", "sub/hardlink.txt"}
    upper = str(data / "SUB" / "DEEPER").upper()
    cli.run("restore", "latest", "-t", tmp_path / "c", "--iinclude", upper)
    assert restored_names(tmp_path / "c", data) == {
        "sub",
        "sub/deeper",
        "sub/deeper/zeros.bin",
        "sub/deeper/ünïcødé name.txt",
    }
    assert "invalid pattern '[z-a]'" in fail_line(
        cli, "restore", "latest", "-t", tmp_path, "-e", "[z-a]"
    )


def dry_run(repo: Repo, target: Path, *args: str, code: int = 0) -> dict[str, Any]:
    """--json --dry-run: {"summary": ..., "actions": {path below data: action}}."""
    proc = repo.cli.run(
        "--json", "restore", repo.snapshot, "-t", target, "--dry-run", *args, check=False
    )
    assert proc.returncode == code, proc.stderr.decode()
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    prefix = str(repo.data) + "/"
    actions: dict[str, str] = {}  # a path's actions joined with "," (delete,new)
    for d in docs[:-1]:
        if d["item"].startswith(prefix):
            key = d["item"].removeprefix(prefix)
            actions[key] = ",".join(filter(None, [actions.get(key), d["action"]]))
    assert docs[-1]["message_type"] == "summary" and docs[-1]["dry_run"] is True
    return {"summary": docs[-1], "actions": actions}


def test_restore_dry_run_writes_nothing_and_tells_what_would_happen(
    repo: Repo, tmp_path: Path
) -> None:
    target = tmp_path / "t"
    fresh = dry_run(repo, target)
    assert not target.exists(), "a dry run creates nothing"
    assert set(fresh["actions"].values()) == {"new"}
    assert len(fresh["actions"]) == len(repo.state) + 1  # and the fifo
    files = [repo.data / k for k, v in repo.state.items() if v[0] == "file"]
    assert fresh["summary"]["bytes_to_write"] == sum(p.stat().st_size for p in files)
    text = repo.cli.run("restore", "latest", "-t", target, "--dry-run").stdout.decode()
    assert "nothing written" in text and f"new       {repo.data / 'hello.txt'}" in text

    repo.cli.run("restore", repo.snapshot, "-t", target)
    copy = restored(target, repo.data)
    (copy / "fifo").unlink()  # tree_state would block reading it
    (copy / "hello.txt").write_text("changed locally\n")
    (copy / "sub" / "deeper").rename(tmp_path / "moved")
    (copy / "sub" / "deeper").write_text("a file where a directory was")
    (copy / "empty").unlink()
    (copy / "empty").mkdir()  # a directory where a file was: restore refuses it
    before = tree_state(target)

    plan = dry_run(repo, target, "--overwrite", "if-changed", code=1)
    actions = plan["actions"]
    assert actions["hello.txt"] == "overwrite"
    assert actions["sub/random.bin"] == "keep"
    assert actions["sub/deeper"] == "delete,new" and actions["sub/deeper/zeros.bin"] == "new"
    assert actions["empty"] == "error"
    assert plan["summary"]["error"] == 1 and plan["summary"]["delete"] == 1
    assert tree_state(target) == before, "a dry run writes nothing"

    never = dry_run(repo, target, "--overwrite", "never", "-i", repo.data / "hello.txt")
    assert never["actions"] == {"hello.txt": "keep"}
    assert "need --target" in fail_line(
        repo.cli, "restore", "latest", "--stdout-to-command", "cat", "--dry-run"
    )
