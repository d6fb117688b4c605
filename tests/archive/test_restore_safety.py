"""Restore never writes outside its target, whatever a (malicious) snapshot says.

The snapshots here are crafted with the repository API: tree documents with names such as
``..`` or ``a/b``, repeated names, symlinks followed by entries that would write through
them. A sentinel directory beside the target must come out untouched, every bad entry
must be reported, and the good entries must still be restored.

Also here: backup's own safety, a file that changes while it is read and a file that
cannot be read are reported, never stored half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safehold.archive.browse import find_node, walk
from safehold.archive.tree import Node, encode_tree
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from tests.archive.helpers import (
    backup,
    deep_tree,
    describe_tree,
    diff_descriptions,
    restore,
    save_data,
    save_raw_tree,
    write,
)
from tests.conftest import CHEAP_KDF, PASSWORD


def doc(name: bytes, type: str = "file", **fields: Any) -> dict[str, Any]:
    """One node document as the project encodes it."""
    fields.setdefault("mode", 0o644 if type != "dir" else 0o755)
    node = Node(name=name, type=type, **fields)
    return json.loads(encode_tree([node]))["nodes"][0]  # type: ignore[no-any-return]


def file_doc(repo: Repository, name: bytes, data: bytes, **fields: Any) -> dict[str, Any]:
    return doc(name, "file", size=len(data), content=[save_data(repo, data)], **fields)


def dir_doc(name: bytes, subtree: str, **fields: Any) -> dict[str, Any]:
    return doc(name, "dir", subtree=subtree, **fields)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the target; the test fails if restore changes anything in it."""
    outside = tmp_path / "outside"
    write(outside / "keep", b"original\n")
    (outside / "subdir").mkdir()
    before = describe_tree(outside)
    parent_before = sorted(os.listdir(tmp_path))
    yield outside
    assert diff_descriptions(before, describe_tree(outside)) == [], "restore wrote outside"
    extra = set(os.listdir(tmp_path)) - set(parent_before) - {"target", "repo"}
    assert not extra, f"restore created {extra} beside the target"


def error_paths(errors: list[tuple[str, str]]) -> list[str]:
    return sorted(path for path, _ in errors)


# ---- names that try to leave the target ------------------------------------------------


def test_names_that_escape_are_refused_and_good_entries_restored(
    local_repo: Repository, tmp_path: Path, sentinel: Path
) -> None:
    repo = local_repo
    escaping = save_raw_tree(repo, [file_doc(repo, b"escaped", b"pwned\n")])
    passwd = save_raw_tree(repo, [file_doc(repo, b"passwd", b"root::0:0::/:/bin/sh\n")])
    good_inner = save_raw_tree(repo, [file_doc(repo, b"inner", b"inner\n")])
    root = save_raw_tree(
        repo,
        [
            file_doc(repo, b"..", b"dotdot\n"),
            file_doc(repo, b"../x", b"up and over\n"),
            file_doc(repo, b"../outside/keep", b"overwritten\n"),
            file_doc(repo, b"a/b", b"nested name\n"),
            file_doc(repo, b".", b"dot\n"),
            file_doc(repo, b"", b"empty name\n"),
            file_doc(repo, b"nul\x00byte", b"nul\n"),
            dir_doc(b"..", escaping),
            dir_doc(b"/etc", passwd),
            dir_doc(b"/", escaping),
            doc(b"../link", "symlink", target=b"/etc/passwd"),
            file_doc(repo, b"good", b"good\n"),
            dir_doc(b"gooddir", good_inner),
        ],
    )
    target = tmp_path / "target"
    passwd_before = os.stat("/etc/passwd")
    stats = restore(repo, root, target)

    assert os.stat("/etc/passwd").st_mtime_ns == passwd_before.st_mtime_ns
    assert sorted(os.listdir(target)) == ["good", "gooddir"]
    assert (target / "good").read_bytes() == b"good\n"
    assert (target / "gooddir" / "inner").read_bytes() == b"inner\n"
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "escaped").exists()
    assert len(stats.errors) == 11, stats.errors
    reported = " ".join(error_paths(stats.errors))
    for shown in ["/..", "/../x", "/a/b", "/etc", "/nul\x00byte", "/../link"]:
        assert shown in reported


def test_repeated_names_first_wins_and_the_rest_are_reported(
    local_repo: Repository, tmp_path: Path, sentinel: Path
) -> None:
    repo = local_repo
    root = save_raw_tree(
        repo,
        [
            file_doc(repo, b"dup", b"first\n"),
            file_doc(repo, b"dup", b"second\n"),
            doc(b"dup", "symlink", target=str(sentinel / "keep").encode()),
            file_doc(repo, b"good", b"good\n"),
        ],
    )
    target = tmp_path / "target"
    stats = restore(repo, root, target)
    assert (target / "dup").read_bytes() == b"first\n"
    assert (target / "good").read_bytes() == b"good\n"
    assert error_paths(stats.errors) == ["/dup", "/dup"]


@pytest.mark.parametrize("overwrite", ["always", "if-changed", "never"])
def test_symlink_in_snapshot_then_entry_that_writes_through_it(
    local_repo: Repository, tmp_path: Path, sentinel: Path, overwrite: str
) -> None:
    repo = local_repo
    through = save_raw_tree(
        repo, [file_doc(repo, b"pwned", b"pwned\n"), file_doc(repo, b"keep", b"overwritten\n")]
    )
    root = save_raw_tree(
        repo,
        [
            doc(b"evil", "symlink", target=str(sentinel).encode()),
            dir_doc(b"evil", through),
            doc(b"evil_file", "symlink", target=str(sentinel / "keep").encode()),
            file_doc(repo, b"evil_file", b"overwritten\n", mode=0o777),
            doc(b"evil_rel", "symlink", target=b"../outside"),
            dir_doc(b"evil_rel", through),
            file_doc(repo, b"good", b"good\n"),
        ],
    )
    target = tmp_path / "target"
    stats = restore(repo, root, target, overwrite=overwrite)
    assert (target / "good").read_bytes() == b"good\n"
    assert os.readlink(target / "evil") == str(sentinel)
    assert os.readlink(target / "evil_file") == str(sentinel / "keep")
    assert error_paths(stats.errors) == ["/evil", "/evil_file", "/evil_rel"]


def test_hardlink_to_a_path_that_is_a_symlink_never_links_outside(
    local_repo: Repository, tmp_path: Path, sentinel: Path
) -> None:
    """A file whose inode repeats an earlier one becomes a hardlink, never to outside."""
    repo = local_repo
    link = {"inode": 77, "device": 1, "links": 2}
    root = save_raw_tree(
        repo,
        [
            file_doc(repo, b"a", b"linked\n", **link),
            doc(b"a", "symlink", target=str(sentinel / "keep").encode()),
            file_doc(repo, b"b", b"linked\n", **link),
        ],
    )
    target = tmp_path / "target"
    stats = restore(repo, root, target)
    assert error_paths(stats.errors) == ["/a"]
    assert os.lstat(target / "a").st_ino == os.lstat(target / "b").st_ino
    assert os.lstat(sentinel / "keep").st_nlink == 1


@pytest.mark.parametrize("overwrite", ["always", "if-changed", "never"])
def test_existing_symlinks_in_the_target_are_not_followed(
    local_repo: Repository, tmp_path: Path, sentinel: Path, overwrite: str
) -> None:
    repo = local_repo
    inner = save_raw_tree(repo, [file_doc(repo, b"keep", b"overwritten\n")])
    deeper = save_raw_tree(repo, [dir_doc(b"subdir", inner)])
    root = save_raw_tree(
        repo,
        [
            dir_doc(b"pre_dir", inner),
            file_doc(repo, b"pre_file", b"overwritten\n"),
            doc(b"pre_fifo", "fifo", mode=0o666),
            dir_doc(b"pre_deep", deeper),
            file_doc(repo, b"good", b"good\n"),
        ],
    )
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(sentinel, target / "pre_dir")
    os.symlink(sentinel / "keep", target / "pre_file")
    os.symlink(sentinel / "keep", target / "pre_fifo")
    os.symlink(sentinel, target / "pre_deep")
    stats = restore(repo, root, target, overwrite=overwrite)
    assert (target / "good").read_bytes() == b"good\n"
    if overwrite == "never":
        # kept as they are; a directory cannot be merged into a symlink: reported
        assert os.path.islink(target / "pre_dir") and os.path.islink(target / "pre_file")
        assert error_paths(stats.errors) == ["/pre_deep", "/pre_dir"]
    else:
        assert stats.errors == []
        assert (target / "pre_dir" / "keep").read_bytes() == b"overwritten\n"
        assert not os.path.islink(target / "pre_dir")
        assert (target / "pre_file").read_bytes() == b"overwritten\n"
        assert stat.S_ISFIFO(os.lstat(target / "pre_fifo").st_mode)
        assert (target / "pre_deep" / "subdir" / "keep").read_bytes() == b"overwritten\n"


def test_malformed_entries_are_reported_and_siblings_restored(
    local_repo: Repository, tmp_path: Path, sentinel: Path
) -> None:
    repo = local_repo
    data_blob = save_data(repo, b"not a tree")
    root = save_raw_tree(
        repo,
        [
            {**doc(b"int_subtree", "dir"), "subtree": 5},
            {**doc(b"list_xattrs", "file"), "xattrs": ["user.x"]},
            {**doc(b"huge_mode", "file"), "mode": 2**70},
            {**doc(b"huge_uid", "dir"), "uid": 2**40},
            {**doc(b"huge_mtime", "dir"), "mtime_ns": 10**30},
            {**doc(b"bad_type", "file"), "type": "door"},
            {**doc(b"bad_content", "file"), "content": ["zz"]},
            "not even an object",
            dir_doc(b"data_as_tree", data_blob.hex()),
            dir_doc(b"missing_tree", "00" * 32),
            doc(b"missing_blob", "file", size=4, content=[b"\x01" * 32]),
            doc(b"nul_target", "symlink", target=b"/tmp/x\x00y"),
            file_doc(repo, b"good", b"good\n"),
        ],
    )
    target = tmp_path / "target"
    stats = restore(repo, root, target)
    assert (target / "good").read_bytes() == b"good\n"
    assert error_paths(stats.errors) == sorted(
        [
            "/int_subtree",
            "/list_xattrs",
            "/huge_mode",
            "/huge_uid",
            "/huge_mtime",
            "/bad_type",
            "/bad_content",
            "/",  # the entry that is not an object has no name
            "/data_as_tree",
            "/missing_tree",
            "/missing_blob",
            "/nul_target",
        ]
    )


# ---- backup: files that change or cannot be read -----------------------------------------


@pytest.mark.parametrize("how", ["append", "overwrite in place"])
def test_file_changing_during_backup_is_reported_not_stored(
    local_repo: Repository, tmp_path: Path, how: str
) -> None:
    src = tmp_path / "src"
    write(src / "steady", b"steady\n")
    growing = src / "changing.db"
    size = 32 * 1024 * 1024  # long enough that every read overlaps a write
    write(growing, bytes(size))
    stop = threading.Event()
    writes = 0

    def append() -> None:
        nonlocal writes
        with open(growing, "r+b", buffering=0) as f:
            while not stop.is_set():
                if how == "append":
                    f.seek(0, os.SEEK_END)
                else:  # same size throughout: only mtime and ctime tell
                    f.seek((writes * 7919 * 4096) % (size - 4096))
                f.write(os.urandom(4096))
                writes += 1
                time.sleep(0.0005)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        while writes == 0:
            time.sleep(0.001)
        result = backup(local_repo, src)
    finally:
        stop.set()
        writer.join()
    assert [p for p, _ in result.stats.errors] == [str(growing)]
    snapshot = result.snapshot
    with pytest.raises(InvalidArgument, match="not in snapshot"):
        find_node(local_repo, snapshot, str(growing))
    steady = find_node(local_repo, snapshot, str(src / "steady"))
    assert steady is not None and steady.size == 7


def test_unreadable_file_is_reported_and_skipped(tmp_path: Path) -> None:
    """Root reads any file, so the backup runs in a child process as ``nobody``.

    The child is forked from this one (not exec'ed: this interpreter lives under /root,
    where nobody may not go) and drops to nobody's uid and gid before backing up.
    """
    base = Path(tempfile.mkdtemp(prefix="safehold-nobody-"))
    try:
        os.chmod(base, 0o755)
        src = base / "src"
        write(src / "readable", b"anyone can read this\n", 0o644)
        write(src / "secret", b"only root\n", 0o000)
        write(src / "locked" / "hidden", b"in a closed directory\n", 0o644)
        os.chmod(src / "locked", 0o700)
        write(src / "z_after", b"after the failures\n", 0o644)
        repo_dir = base / "repo"
        Repository.init(LocalStore(repo_dir), PASSWORD, CHEAP_KDF)
        shutil.chown(repo_dir, "nobody", "nogroup")
        for dirpath, dirnames, filenames in os.walk(repo_dir):
            for name in dirnames + filenames:
                shutil.chown(os.path.join(dirpath, name), "nobody", "nogroup")
        errors = _backup_as_nobody(repo_dir, src)
        assert sorted(p for p, _ in errors) == [str(src / "locked"), str(src / "secret")]
        repo = Repository.open(LocalStore(repo_dir), PASSWORD)
        repo.load_index()
        (snapshot,) = repo.list_snapshots()
        names = {p for p, _ in walk(repo, snapshot.tree, b"")}
        root = os.fsencode(src)
        assert root + b"/readable" in names and root + b"/z_after" in names
        assert root + b"/secret" not in names
    finally:
        shutil.rmtree(base)


def _backup_as_nobody(repo_dir: Path, src: Path) -> list[tuple[str, str]]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            repo = Repository.open(LocalStore(repo_dir), PASSWORD)
            repo.load_index()
            result = backup(repo, src)
            with os.fdopen(write_end, "w") as out:
                json.dump(result.stats.errors, out)
            status = 0
        except BaseException as exc:  # report anything to the parent
            with contextlib.suppress(OSError):
                os.write(write_end, json.dumps({"child failed": repr(exc)}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        output = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    return [(str(path), str(message)) for path, message in json.loads(output)]


# ---- depth ---------------------------------------------------------------------------------

DEEP = 600  # beyond what Python's default recursion limit (1000 frames) lets a recursive walk do


def test_restore_of_a_very_deep_tree(local_repo: Repository, tmp_path: Path) -> None:
    tree = deep_tree(local_repo, DEEP)
    target = tmp_path / "target"
    stats = restore(local_repo, tree, target)
    assert stats.errors == []
    assert stats.dirs_restored == DEEP and stats.files_restored == 1
    assert (target.joinpath(*["d"] * DEEP) / "leaf").read_bytes() == b"leaf\n"
