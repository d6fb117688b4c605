"""The command line as a user drives it: real processes, real files, real repositories.

Every command and option of the CLI contract is run here in a subprocess; outputs are
checked field by field and restores byte for byte against the files that were backed up.
The error paths (exit codes, one-line messages, damaged repositories) are in test_faults.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import select
import stat
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI, PASSWORD, SAFEHOLD

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
KDF = ("--kdf-memory", "256", "--kdf-iterations", "1")
SUMMARY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "snapshot_id": str,
    "files_new": int,
    "files_changed": int,
    "files_unmodified": int,
    "total_files_processed": int,
    "total_bytes_processed": int,
    "data_added": int,
    "total_duration": (int, float),
}


# ---- helpers (test_faults.py uses them too) -------------------------------------------


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def make_tree(root: Path, seed: int = 0, hardlink: bool = True) -> Path:
    """Small text, empty, multi-chunk random, sparse-ish, unicode, symlink and hard link."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "hello.txt").write_text("hello world\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "random.bin").write_bytes(random_bytes(2_500_000, seed))
    (root / "sub" / "deeper" / "zeros.bin").write_bytes(bytes(1 << 20) + b"tail")
    (root / "sub" / "deeper" / "ünïcødé name.txt").write_text("ünïcødé\n")
    (root / "link").symlink_to("hello.txt")
    if hardlink:
        os.link(root / "hello.txt", root / "sub" / "hardlink.txt")
    (root / "hello.txt").chmod(0o640)
    (root / "sub" / "deeper").chmod(0o750)
    os.utime(root / "empty", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def tree_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below root: type, mode, and the content digest or link target."""
    state: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, digest)
    return state


def restored(target: Path, source: Path) -> Path:
    """Where restore puts ``source``: its absolute path recreated under the target."""
    return target / source.relative_to("/")


def assert_same_tree(copy: Path, original: Path) -> None:
    assert copy.is_dir(), f"{copy} was not restored"
    assert tree_state(copy) == tree_state(original)


def regular_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def json_lines(proc: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON document."""
    docs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    assert docs, "no JSON output"
    return docs


def json_doc(proc: subprocess.CompletedProcess[bytes]) -> Any:
    """stdout must hold exactly one JSON document."""
    return json.loads(proc.stdout)


def backup_summary(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    docs = json_lines(proc)
    summary = docs[-1]
    assert summary["message_type"] == "summary"
    for name, kind in SUMMARY_FIELDS.items():
        assert isinstance(summary[name], kind), (name, summary[name])
    assert HEX64.match(summary["snapshot_id"])
    return summary


def backup(cli: CLI, *args: str | os.PathLike[str], input: bytes | None = None) -> dict[str, Any]:
    return backup_summary(cli.run("--json", "backup", *args, input=input))


def snapshots(cli: CLI, *args: str | os.PathLike[str]) -> list[dict[str, Any]]:
    docs = json_doc(cli.run("--json", "snapshots", *args))
    assert isinstance(docs, list)
    return docs


def parse_time(text: str) -> datetime:
    assert RFC3339.match(text), f"not RFC 3339: {text}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def with_env(cli: CLI, drop: tuple[str, ...] = (), **extra: str) -> CLI:
    env = {k: v for k, v in cli.env.items() if k not in drop}
    env.update(extra)
    return dataclasses.replace(cli, env=env)


def ls_paths(cli: CLI, *args: str | os.PathLike[str]) -> list[str]:
    return [doc["path"] for doc in json_lines(cli.run("--json", "ls", *args))]


# ---- init, backup, snapshots, restore -------------------------------------------------


def test_help_and_version(cli: CLI) -> None:
    out = cli.run("--help").stdout.decode()
    for command in ("init", "key", "backup", "snapshots", "restore", "ls", "diff", "dump"):
        assert command in out
    assert "stats" in out
    assert cli.run("--version").stdout.decode().startswith("safehold ")


def test_init_json(cli: CLI) -> None:
    doc = json_doc(cli.run("--json", "init", *KDF))
    assert doc["message_type"] == "initialized"
    assert isinstance(doc["id"], str) and len(doc["id"]) >= 16
    assert doc["repository"] == str(cli.repo)
    assert (cli.repo / "config").is_file()
    assert snapshots(cli) == []


def test_backup_restore_round_trip(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data" / "app", hardlink=False)
    (data / "sub" / "hardlink.txt").write_text("hello world\n")  # same content, other file
    other = tmp_path / "etc-conf"
    other.mkdir()
    (other / "app.toml").write_text("[server]\nport = 8080\n")
    cli.init()
    summary = backup(
        cli,
        data,
        other,
        "--tag",
        "daily",
        "--tag",
        "db,prod",
        "--host",
        "web-1",
        "--time",
        "2025-03-04T05:06:07Z",
    )
    files = regular_files(data) + regular_files(other)
    assert summary["files_new"] == len(files)
    assert summary["files_changed"] == summary["files_unmodified"] == 0
    assert summary["total_files_processed"] == len(files)
    assert summary["total_bytes_processed"] == sum(p.stat().st_size for p in files)
    assert summary["data_added"] > 2_500_000  # the random file does not compress

    [snap] = snapshots(cli)
    assert snap["id"] == summary["snapshot_id"]
    assert snap["short_id"] == snap["id"][:8]
    assert parse_time(snap["time"]) == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert snap["hostname"] == "web-1"
    assert sorted(snap["paths"]) == sorted([str(data), str(other)])
    assert sorted(snap["tags"]) == ["daily", "db", "prod"]

    # by short id, by full id, and as latest: the absolute paths come back under the target
    for ref, target in [
        (snap["short_id"], tmp_path / "r1"),
        (snap["id"], tmp_path / "r2"),
        ("latest", tmp_path / "r3"),
    ]:
        out = cli.run("restore", ref, "--target", target).stdout.decode()
        assert f"restored snapshot {snap['short_id']}" in out
        assert_same_tree(restored(target, data), data)
        assert_same_tree(restored(target, other), other)
    empty = restored(tmp_path / "r1", data / "empty")
    assert empty.stat().st_mtime_ns == 1_600_000_000_123_456_789


@dataclass
class Shared:
    """One repository with two snapshots, for the tests that only read from it."""

    cli: CLI
    data: Path
    first: dict[str, Any]  # backup summary of make_tree's tree
    second: dict[str, Any]  # ... after one file added, removed, changed and retyped
    first_state: dict[str, tuple[object, ...]]
    first_files: int
    old_random: bytes


def make_cli(base: Path) -> CLI:
    """What conftest's ``cli`` fixture gives, for a module-wide repository under ``base``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env.update(
        SAFEHOLD_REPOSITORY=str(base / "repo"),
        SAFEHOLD_PASSWORD=PASSWORD.decode(),
        COLUMNS="200",
    )
    return CLI(base / "repo", env)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    base = tmp_path_factory.mktemp("shared")
    cli = make_cli(base)
    data = make_tree(base / "data")
    cli.init()
    first = backup(cli, data)
    first_state, first_files = tree_state(data), len(regular_files(data))
    old_random = (data / "sub" / "random.bin").read_bytes()
    (data / "new.txt").write_text("new")
    (data / "empty").unlink()
    (data / "sub" / "random.bin").write_bytes(random_bytes(1000, seed=9))
    (data / "link").unlink()
    (data / "link").mkdir()  # a symlink became a directory
    second = backup(cli, data)
    return Shared(cli, data, first, second, first_state, first_files, old_random)


def test_hard_links_restored_as_one_file(shared: Shared, tmp_path: Path) -> None:
    assert shared.first["files_new"] == shared.first_files  # both names count as new
    assert shared.first["files_unmodified"] == 0
    shared.cli.run("restore", shared.first["snapshot_id"][:8], "--target", tmp_path)
    hello = restored(tmp_path, shared.data / "hello.txt")
    link = restored(tmp_path, shared.data / "sub" / "hardlink.txt")
    assert hello.stat().st_ino == link.stat().st_ino
    assert hello.stat().st_nlink == 2
    assert tree_state(restored(tmp_path, shared.data)) == shared.first_state


def test_restore_verify_json(shared: Shared, tmp_path: Path) -> None:
    sid = shared.first["snapshot_id"]
    docs = json_lines(shared.cli.run("--json", "restore", sid, "--target", tmp_path, "--verify"))
    summary = docs[-1]
    assert summary["message_type"] == "summary"
    assert summary["snapshot_id"] == sid
    assert summary["target"] == str(tmp_path)
    assert summary["errors"] == 0
    assert summary["files_restored"] == shared.first_files
    assert summary["files_verified"] >= shared.first_files - 1  # a hard link's 2nd name
    assert summary["bytes_written"] > 3_000_000
    assert isinstance(summary["total_duration"], int | float)
    assert tree_state(restored(tmp_path, shared.data)) == shared.first_state


def test_restore_include(shared: Shared, tmp_path: Path) -> None:
    cli, data, first = shared.cli, shared.data, shared.first["snapshot_id"][:8]
    deeper = data / "sub" / "deeper"  # the same in both snapshots
    cli.run("restore", "latest", "--target", tmp_path / "r", "--include", deeper)
    assert_same_tree(restored(tmp_path / "r", deeper), deeper)
    assert not restored(tmp_path / "r", data / "hello.txt").exists()
    assert not restored(tmp_path / "r", data / "sub" / "random.bin").exists()

    target2 = tmp_path / "r2"
    cli.run("restore", first, "-t", target2, "-i", data / "hello.txt", "-i", data / "link")
    names = sorted(p.name for p in restored(target2, data).iterdir())
    assert names == ["hello.txt", "link"]
    assert restored(target2, data / "hello.txt").read_text() == "hello world\n"
    assert restored(target2, data / "link").is_symlink()


def test_restore_overwrite_modes(shared: Shared, tmp_path: Path) -> None:
    cli, data, first = shared.cli, shared.data, shared.first["snapshot_id"][:8]
    cli.run("restore", first, "--target", tmp_path)
    copy = restored(tmp_path, data / "sub" / "random.bin")
    n_files = shared.first_files

    def restore(mode: str) -> dict[str, Any]:
        proc = cli.run("--json", "restore", first, "--target", tmp_path, "--overwrite", mode)
        summary: dict[str, Any] = json_lines(proc)[-1]
        assert summary["errors"] == 0
        return summary

    copy.write_bytes(b"changed locally")
    summary = restore("never")
    assert copy.read_bytes() == b"changed locally"
    assert summary["files_skipped"] == n_files + 1  # and the symlink
    assert summary["files_restored"] == 0

    summary = restore("if-changed")  # only the changed file is written again
    assert copy.read_bytes() == shared.old_random
    assert summary["files_restored"] == 1
    assert summary["files_skipped"] == n_files - 1

    copy.write_bytes(b"changed again")
    summary = restore("always")
    assert summary["files_restored"] == n_files
    assert summary["files_skipped"] == 0
    assert tree_state(restored(tmp_path, data)) == shared.first_state


def test_incremental_backups_and_force(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", hardlink=False)
    n_files = len(regular_files(data))
    cli.init()
    first = backup(cli, data)
    second = backup(cli, data)
    assert second["files_unmodified"] == n_files
    assert second["files_new"] == second["files_changed"] == 0
    assert second["data_added"] < 4096

    with (data / "hello.txt").open("a") as f:
        f.write("one more line\n")
    third = backup(cli, data)
    assert third["files_changed"] == 1
    assert third["files_unmodified"] == n_files - 1
    assert third["data_added"] < 64 * 1024  # the big files are not stored again

    forced = backup(cli, data, "--force")  # re-reads every file; the same content dedupes
    assert forced["files_new"] == forced["files_changed"] == 0
    assert forced["files_unmodified"] == forced["total_files_processed"] == n_files
    assert forced["data_added"] < 64 * 1024

    snaps = snapshots(cli)
    assert [s["id"] for s in snaps] == [
        first["snapshot_id"],
        second["snapshot_id"],
        third["snapshot_id"],
        forced["snapshot_id"],
    ]
    assert snaps[1]["parent"] == first["snapshot_id"]
    assert [parse_time(s["time"]) for s in snaps] == sorted(parse_time(s["time"]) for s in snaps)

    # the first snapshot still holds the old content
    old = cli.run("dump", first["snapshot_id"][:8], data / "hello.txt").stdout
    assert old == b"hello world\n"
    assert cli.run("dump", "latest", data / "hello.txt").stdout.endswith(b"one more line\n")


def test_time_option_and_filters(cli: CLI, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("v1")
    (b / "g").write_text("b")
    cli.init()
    s1 = backup(cli, a, "--host", "h1", "--tag", "x", "--time", "2024-01-01T00:00:00Z")
    (a / "f").write_text("v2")
    s2 = backup(cli, a, "--host", "h2", "--tag", "y", "--time", "2024-02-01T12:30:00+02:00")
    s3 = backup(cli, b, "--host", "h1", "--tag", "x,z", "--time", "2024-03-01T00:00:00Z")
    ids = {1: s1["snapshot_id"], 2: s2["snapshot_id"], 3: s3["snapshot_id"]}

    def found(*args: str | os.PathLike[str]) -> list[str]:
        return [s["id"] for s in snapshots(cli, *args)]

    every = snapshots(cli)
    assert [s["id"] for s in every] == [ids[1], ids[2], ids[3]]  # oldest first
    assert parse_time(every[1]["time"]) == datetime(2024, 2, 1, 10, 30, tzinfo=UTC)
    assert found("--host", "h1") == [ids[1], ids[3]]
    assert found("--tag", "x,z") == [ids[3]]
    assert found("--tag", "y", "--tag", "z") == [ids[2], ids[3]]
    assert found("--path", a) == [ids[1], ids[2]]
    assert found("--host", "h1", "--path", a) == [ids[1]]

    # the table shows the same thing to people
    table = cli.run("snapshots", "--tag", "x").stdout.decode()
    assert ids[1][:8] in table and ids[3][:8] in table and ids[2][:8] not in table
    assert "2 snapshots" in table

    # latest picks the newest snapshot that matches the filters
    assert ls_paths(cli, "latest", "--host", "h1")[-1] == str(b / "g")
    for filters, content in [(("--host", "h1", "--path", str(a)), "v1"), (("--tag", "y"), "v2")]:
        target = tmp_path / f"r-{content}"
        cli.run("restore", "latest", "--target", target, *filters)
        assert restored(target, a / "f").read_text() == content


# ---- looking inside snapshots ---------------------------------------------------------


def test_ls(shared: Shared) -> None:
    cli, data, sid = shared.cli, shared.data, shared.first["snapshot_id"]
    short = sid[:8]

    plain = cli.run("ls", short).stdout.decode().splitlines()
    assert str(data.parent) in plain  # the parents of the backed-up path are listed too
    assert {str(data / rel) for rel in shared.first_state} | {str(data)} <= set(plain)

    docs = json_lines(cli.run("--json", "ls", short, data / "sub"))
    assert docs[0]["path"] == str(data / "sub")
    assert {d["path"] for d in docs} == {str(data / "sub")} | {
        str(data / rel) for rel in shared.first_state if rel.startswith("sub")
    }
    by_path = {d["path"]: d for d in json_lines(cli.run("--json", "ls", sid, data))}
    random_doc = by_path[str(data / "sub" / "random.bin")]
    assert random_doc["type"] == "file"
    assert random_doc["size"] == 2_500_000
    assert random_doc["name"] == "random.bin"
    assert isinstance(random_doc["mode"], int)
    parse_time(random_doc["mtime"])
    assert by_path[str(data / "link")]["type"] == "symlink"
    assert by_path[str(data / "link")]["link_target"] == "hello.txt"
    assert by_path[str(data / "sub")]["type"] == "dir"
    assert by_path[str(data / "hello.txt")]["mode"] == 0o640

    long = cli.run("ls", "-l", short, data).stdout.decode().splitlines()
    line = next(x for x in long if x.endswith(str(data / "sub" / "random.bin")))
    assert line.startswith("-rw") and "2500000" in line
    assert any(x.startswith("l") and x.endswith(str(data / "link")) for x in long)


def test_diff(shared: Shared) -> None:
    cli, data = shared.cli, shared.data
    s1, s2 = shared.first["snapshot_id"], shared.second["snapshot_id"]
    lines = set(cli.run("diff", s1[:8], s2[:8]).stdout.decode().splitlines())
    assert f"+  {data / 'new.txt'}" in lines
    assert f"-  {data / 'empty'}" in lines
    assert f"M  {data / 'sub' / 'random.bin'}" in lines
    assert f"T  {data / 'link'}" in lines
    assert "1 added, 1 removed, 1 modified, 1 changed type" in lines

    docs = json_lines(cli.run("--json", "diff", s1, "latest"))
    changes = {(d["change"], d["path"]) for d in docs[:-1]}
    assert changes == {
        ("+", str(data / "new.txt")),
        ("-", str(data / "empty")),
        ("M", str(data / "sub" / "random.bin")),
        ("T", str(data / "link")),
    }
    assert docs[-1] == {
        "message_type": "summary",
        "added": 1,
        "removed": 1,
        "modified": 1,
        "type_changed": 1,
    }
    same = json_lines(cli.run("--json", "diff", "latest", s2))
    assert same == [
        {"message_type": "summary", "added": 0, "removed": 0, "modified": 0, "type_changed": 0}
    ]


def test_dump(shared: Shared) -> None:
    cli, data, sid = shared.cli, shared.data, shared.first["snapshot_id"]
    for ref in (sid, sid[:8]):
        assert cli.run("dump", ref, data / "sub" / "random.bin").stdout == shared.old_random
    latest = cli.run("dump", "latest", data / "sub" / "random.bin").stdout
    assert latest == (data / "sub" / "random.bin").read_bytes() == random_bytes(1000, seed=9)
    out = cli.run("dump", "latest", data / "sub" / "deeper" / "zeros.bin").stdout
    assert out == bytes(1 << 20) + b"tail"
    assert cli.run("dump", sid[:8], data / "empty").stdout == b""


def test_stdin_backup_and_dump(cli: CLI, tmp_path: Path) -> None:
    stream = random_bytes(3 << 20, seed=3)
    cli.init()
    summary = backup(cli, "--stdin", "--stdin-filename", "db/dump.sql", input=stream)
    assert summary["total_bytes_processed"] == len(stream)
    assert summary["files_new"] == 1
    [snap] = snapshots(cli)
    assert snap["paths"] == ["/db/dump.sql"]
    assert cli.run("dump", "latest", "/db/dump.sql").stdout == stream
    assert cli.run("dump", snap["short_id"], "/db/dump.sql").stdout == stream
    [doc] = [d for d in json_lines(cli.run("--json", "ls", "latest")) if d["type"] == "file"]
    assert doc["path"] == "/db/dump.sql" and doc["size"] == len(stream)
    cli.run("restore", "latest", "--target", tmp_path / "r")
    assert (tmp_path / "r" / "db" / "dump.sql").read_bytes() == stream

    # the default name, and a second stream that dedupes against the first
    again = backup(cli, "--stdin", input=stream)
    assert again["data_added"] < 64 * 1024
    assert cli.run("dump", "latest", "/stdin").stdout == stream


def test_stats(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    files = regular_files(data)
    logical = sum(p.stat().st_size for p in files)
    cli.init()
    s1 = backup(cli, data)["snapshot_id"]
    backup(cli, data, "--force")

    all_stats = json_doc(cli.run("--json", "stats"))
    assert all_stats["snapshots_count"] == 2
    assert all_stats["total_file_count"] == 2 * len(files)
    assert all_stats["total_size"] == 2 * logical
    for name in (
        "total_uncompressed_size",
        "total_stored_size",
        "total_blob_count",
    ):
        assert isinstance(all_stats[name], int) and all_stats[name] > 0
    for name in ("dedup_ratio", "compression_ratio", "space_saving_ratio"):
        assert isinstance(all_stats[name], int | float)
    assert all_stats["dedup_ratio"] > 1.5  # the second snapshot stores nothing new

    one = json_doc(cli.run("--json", "stats", s1[:8]))
    assert one["snapshots_count"] == 1
    assert one["total_file_count"] == len(files)
    assert one["total_size"] == logical
    # the same data; only the trees of ancestor directories (e.g. /tmp, which other
    # processes may touch between the two backups) can differ
    assert 0 <= all_stats["total_stored_size"] - one["total_stored_size"] < 2048
    text = cli.run("stats", "latest").stdout.decode()
    assert "Snapshots:" in text and "Stored size:" in text


# ---- what a backup leaves out -----------------------------------------------------------


def test_excludes(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    (data / "build.tmp").write_text("scratch")
    (data / "sub" / "more.tmp").write_text("scratch")
    (data / "node_modules" / "pkg").mkdir(parents=True)
    (data / "node_modules" / "pkg" / "index.js").write_text("x")
    (data / "logs").mkdir()
    (data / "logs" / "today.log").write_text("log")
    (data / "cache").mkdir()
    (data / "cache" / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n"
    )
    (data / "cache" / "blob").write_text("cached")
    (data / "notcache").mkdir()
    (data / "notcache" / "CACHEDIR.TAG").write_text("no signature here")
    exclude_file = tmp_path / "excludes.txt"
    exclude_file.write_text(f"# build output\n\nnode_modules\n  {data}/logs/*.log  \n")
    cli.init()
    backup(
        cli,
        data,
        "--exclude",
        "*.tmp",
        "--exclude-file",
        exclude_file,
        "--exclude-caches",
    )
    paths = set(ls_paths(cli, "latest", data))
    assert str(data / "hello.txt") in paths
    assert str(data / "sub" / "random.bin") in paths
    assert str(data / "build.tmp") not in paths
    assert str(data / "sub" / "more.tmp") not in paths
    assert not any("node_modules" in p for p in paths)
    assert str(data / "logs") in paths
    assert str(data / "logs" / "today.log") not in paths
    # a tagged cache keeps its tag file only; an unsigned tag means nothing
    assert str(data / "cache" / "CACHEDIR.TAG") in paths
    assert str(data / "cache" / "blob") not in paths
    assert str(data / "notcache" / "CACHEDIR.TAG") in paths

    # without the options everything is there
    backup(cli, data)
    paths = set(ls_paths(cli, "latest", data))
    assert {str(data / "build.tmp"), str(data / "cache" / "blob")} <= paths
    assert str(data / "node_modules" / "pkg" / "index.js") in paths


def test_one_file_system(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    mount_point = data / "mnt"
    mount_point.mkdir(parents=True)
    (data / "local.txt").write_text("local")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount_point], check=True)
    try:
        (mount_point / "other-fs.txt").write_text("elsewhere")
        cli.init()
        backup(cli, data, "--one-file-system")
        paths = set(ls_paths(cli, "latest", data))
        assert {str(data / "local.txt"), str(mount_point)} <= paths
        assert str(mount_point / "other-fs.txt") not in paths
        backup(cli, data, "-x", "--force")  # the short form
        assert str(mount_point / "other-fs.txt") not in set(ls_paths(cli, "latest", data))
        backup(cli, data)
        assert str(mount_point / "other-fs.txt") in set(ls_paths(cli, "latest", data))
    finally:
        subprocess.run(["umount", mount_point], check=True)


# ---- keys and passwords ---------------------------------------------------------------


def test_keys_add_remove_passwd(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    second_file, third_file = tmp_path / "second", tmp_path / "third"
    second_file.write_text("second password\n")  # the trailing newline is not part of it
    third_file.write_text("third password")
    cli.init()
    [first_key] = json_doc(cli.run("--json", "key", "list"))
    assert first_key["current"] is True
    assert HEX64.match(first_key["id"])
    parse_time(first_key["created"])
    assert isinstance(first_key["hostname"], str) and isinstance(first_key["username"], str)
    backup(cli, data)

    added = json_doc(cli.run("--json", "key", "add", "--new-password-file", second_file, *KDF))
    assert added["message_type"] == "key_added"
    second = with_env(cli, SAFEHOLD_PASSWORD="second password")
    keys = json_doc(second.run("--json", "key", "list"))
    assert {k["id"] for k in keys} == {first_key["id"], added["id"]}
    assert [k["id"] for k in keys if k["current"]] == [added["id"]]
    second.run("restore", "latest", "--target", tmp_path / "r")  # the second one opens it
    assert_same_tree(restored(tmp_path / "r", data), data)
    table = second.run("key", "list").stdout.decode()
    assert added["id"][:8] in table and first_key["id"][:8] in table

    removed = json_doc(second.run("--json", "key", "remove", first_key["id"][:8]))
    assert removed == {"message_type": "key_removed", "id": first_key["id"]}
    assert cli.run("snapshots", check=False).returncode == 12  # the first one no longer does

    changed = json_doc(
        second.run("--json", "key", "passwd", "--new-password-file", third_file, *KDF)
    )
    assert changed["message_type"] == "key_changed"
    assert second.run("snapshots", check=False).returncode == 12
    third = with_env(cli, SAFEHOLD_PASSWORD="third password")
    [key] = json_doc(third.run("--json", "key", "list"))
    assert key["id"] == changed["id"] and key["current"]
    assert len(snapshots(third)) == 1
    assert third.run("dump", "latest", data / "hello.txt").stdout == b"hello world\n"


def test_password_sources(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    password_file = tmp_path / "pw"
    password_file.write_bytes(PASSWORD + b"\n")
    bare = with_env(cli, drop=("SAFEHOLD_PASSWORD",))
    assert snapshots(bare, "--password-file", password_file) == []
    assert json_doc(bare.run("--json", "-p", password_file, "snapshots")) == []
    assert snapshots(with_env(bare, SAFEHOLD_PASSWORD_FILE=str(password_file))) == []
    command = f"cat {password_file}"
    assert snapshots(with_env(bare, SAFEHOLD_PASSWORD_COMMAND=command)) == []
    # as in restic, an explicit file wins over the environment variable
    wrong_env = with_env(cli, SAFEHOLD_PASSWORD="not it")
    assert snapshots(wrong_env, "--password-file", password_file) == []


def run_on_terminal(
    cli: CLI, args: list[str], answers: list[bytes]
) -> subprocess.CompletedProcess[bytes]:
    """Run with a pseudo-terminal as stdin, answering each password prompt in turn."""
    env = {k: v for k, v in cli.env.items() if k != "SAFEHOLD_PASSWORD"}
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*SAFEHOLD, *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal: the prompt goes through stdin
    )
    os.close(slave)
    assert proc.stderr is not None
    stderr = b""
    try:
        for i, answer in enumerate(answers):
            deadline = time.monotonic() + 30
            while stderr.lower().count(b"password") <= i:
                assert time.monotonic() < deadline, f"no prompt {i + 1}: {stderr!r}"
                ready, _, _ = select.select([proc.stderr], [], [], 0.5)
                if ready:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, f"stderr closed before prompt {i + 1}: {stderr!r}"
                    stderr += chunk
            os.write(master, answer + b"\n")
        stdout, rest = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr + rest)


def test_password_prompt_on_terminal(cli: CLI) -> None:
    init = run_on_terminal(cli, ["init", *KDF], [b"typed secret", b"typed secret"])
    assert init.returncode == 0, init.stderr
    assert b"typed secret" not in init.stderr  # not echoed
    proc = run_on_terminal(cli, ["--json", "snapshots"], [b"typed secret"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    wrong = run_on_terminal(cli, ["snapshots"], [b"something else"])
    assert wrong.returncode == 12
    assert snapshots(with_env(cli, SAFEHOLD_PASSWORD="typed secret")) == []

    mismatch = run_on_terminal(cli, ["-r", str(cli.repo) + "2", "init"], [b"one", b"two"])
    assert mismatch.returncode == 1
    assert b"do not match" in mismatch.stderr
    assert not Path(str(cli.repo) + "2").exists()


def test_global_options_after_command(cli: CLI, tmp_path: Path) -> None:
    """-r/--repo, -p/--password-file, --json and -q work after the command name too."""
    data = make_tree(tmp_path / "data")
    repo = tmp_path / "elsewhere"
    password_file = tmp_path / "pw"
    password_file.write_bytes(PASSWORD)
    bare = with_env(cli, drop=("SAFEHOLD_REPOSITORY", "SAFEHOLD_PASSWORD"))

    def run(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
        return bare.run(*args, "-r", repo, "--json", "--password-file", password_file)

    json_doc(run("init", *KDF))
    assert (repo / "config").is_file()
    summary = backup_summary(run("backup", data, "--tag", "t"))
    quiet = bare.run("backup", data, f"--repo={repo}", "-q", f"--password-file={password_file}")
    assert quiet.stdout == b""
    docs = json_doc(run("snapshots"))
    assert [d["id"] for d in docs][:1] == [summary["snapshot_id"]]
    assert len(docs) == 2
    assert len(json_doc(run("key", "list"))) == 1
    assert json_doc(run("stats"))["snapshots_count"] == 2
    assert json_lines(run("diff", "latest", summary["snapshot_id"][:8]))[-1]["added"] == 0
    assert json_lines(run("ls", "latest", data / "sub"))[0]["path"] == str(data / "sub")
    assert json_lines(run("restore", "latest", "--target", tmp_path / "r"))[-1]["errors"] == 0
    assert_same_tree(restored(tmp_path / "r", data), data)
    # global options before the command, mixed with ones after it, and the short forms
    assert ls_paths(bare, "-r", repo, "latest", data / "sub", "-p", password_file)[0] == str(
        data / "sub"
    )
