"""A backup and a restore reproduce a tree faithfully: contents, types, metadata, links, holes.

Everything runs for real: run_backup over files on disk into a LocalStore repository, then
Restorer into another directory. The tests run as root, so they set owners freely.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from safehold.archive.restore import RestoreOptions, Restorer, RestoreStats
from safehold.archive.snapshotter import BackupResult
from safehold.archive.tree import Node
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from tests.archive.helpers import (
    assert_same_tree,
    backup,
    describe_tree,
    diff_descriptions,
    inside,
    require_user_xattrs,
    restore,
    save_tree,
    set_mtimes,
    write,
)
from tests.conftest import CHEAP_KDF, PASSWORD

SPARSE_SIZE = 64 * 1024 * 1024
UNKNOWN_UID, UNKNOWN_GID = 54321, 54322  # no passwd or group entry on this system
NOBODY = 65534
ODD_NAMES = [b"bad-\xff\xfe-bytes", b"new\nline", "ünïcødé".encode(), b"sp ace", b"-dash"]


def build_everything(src: Path) -> None:
    """One tree holding every kind of entry and metadata the restore must reproduce."""
    write(src / "regular.txt", b"hello, world\n", 0o644)
    write(src / "random.bin", os.urandom(3 * 1024 * 1024 + 17))  # several chunks
    write(src / "empty")
    (src / "emptydir").mkdir()
    write(src / "sub" / "deeper" / "file", b"deep\n")
    # hardlinks: three names, two directories, one inode
    write(src / "hard_a", b"linked content\n")
    os.link(src / "hard_a", src / "sub" / "hard_b")
    os.link(src / "hard_a", src / "hard_c")
    # symlinks, relative, absolute, dangling, to a directory
    os.symlink("regular.txt", src / "sym_rel")
    os.symlink("/etc/hostname", src / "sym_abs")
    os.symlink("no/such/target", src / "dangling")
    os.symlink("sub", src / "sym_dir")
    # a sparse file: 64 MiB apparent, a few bytes written
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(SPARSE_SIZE // 2)
        f.write(b"middle")
        f.seek(SPARSE_SIZE - 4)
        f.write(b"tail")
    os.mkfifo(src / "fifo", 0o640)
    for name in ODD_NAMES:
        write(os.path.join(os.fsencode(src), name), b"odd name: " + name)
    (src / ("dir-" + "ünï")).mkdir()
    # owners (before the modes: chown clears setuid/setgid)
    write(src / "owned_unknown", b"no passwd entry\n")
    os.chown(src / "owned_unknown", UNKNOWN_UID, UNKNOWN_GID)
    write(src / "owned_nobody", b"nobody's\n")
    os.chown(src / "owned_nobody", NOBODY, NOBODY)
    (src / "owned_dir").mkdir()
    os.chown(src / "owned_dir", 1, 1)
    os.lchown(src / "sym_rel", 2, 2)
    os.chown(src / "fifo", 3, 3)
    # special mode bits
    write(src / "setuid", b"#!/bin/sh\n", 0o4755)
    write(src / "setgid", b"#!/bin/sh\n", 0o2711)
    write(src / "no_perms", b"secret\n", 0o000)
    write(src / "owned_setuid", b"#!/bin/sh\n")
    os.chown(src / "owned_setuid", UNKNOWN_UID, UNKNOWN_GID)
    os.chmod(src / "owned_setuid", 0o6750)
    (src / "sticky").mkdir()
    os.chmod(src / "sticky", 0o1777)
    (src / "private").mkdir()
    write(src / "private" / "inner", b"inner\n")
    os.chmod(src / "private", 0o700)
    # extended attributes
    os.setxattr(src / "regular.txt", "user.comment", b"hello")
    os.setxattr(src / "regular.txt", "user.binary", b"\x00\xff\x01")
    os.setxattr(src / "sub", "user.on_dir", b"dir attr")
    os.setxattr(src / "empty", "user.empty_value", b"")
    set_mtimes(src)


@dataclass
class Restored:
    source: Path
    copy: Path
    backup: BackupResult
    stats: RestoreStats
    repo: Repository


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Restored:
    base = require_user_xattrs(tmp_path_factory.mktemp("fidelity"))
    src, target = base / "src", base / "target"
    src.mkdir(parents=True)
    build_everything(src)
    repo = Repository.init(LocalStore(base / "repo"), PASSWORD, CHEAP_KDF)
    result = backup(repo, src)
    stats = restore(repo, result.snapshot.tree, target)
    return Restored(src, inside(target, src), result, stats, repo)


def test_backup_and_restore_report_no_errors(restored: Restored) -> None:
    assert restored.backup.stats.errors == []
    assert restored.stats.errors == []


def test_restored_tree_is_identical(restored: Restored) -> None:
    assert_same_tree(restored.source, restored.copy)


def test_hardlinks_are_restored_as_one_inode(restored: Restored) -> None:
    names = ["hard_a", "sub/hard_b", "hard_c"]
    stats = [os.lstat(restored.copy / n) for n in names]
    assert len({(s.st_dev, s.st_ino) for s in stats}) == 1, "hardlinks became separate files"
    assert all(s.st_nlink == 3 for s in stats)
    assert (restored.copy / "hard_c").read_bytes() == b"linked content\n"


def test_sparse_file_keeps_its_holes(restored: Restored) -> None:
    path = restored.copy / "sparse"
    st = os.stat(path)
    assert st.st_size == SPARSE_SIZE
    assert st.st_blocks * 512 < 1024 * 1024, f"{st.st_blocks * 512} bytes allocated"
    with open(path, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(SPARSE_SIZE // 2)
        assert f.read(6) == b"middle"
        f.seek(SPARSE_SIZE - 4)
        assert f.read() == b"tail"


def test_fifo_symlinks_and_empty_entries(restored: Restored) -> None:
    copy = restored.copy
    assert stat.S_ISFIFO(os.lstat(copy / "fifo").st_mode)
    assert os.readlink(copy / "dangling") == "no/such/target"
    assert not (copy / "dangling").exists()
    assert os.readlink(copy / "sym_abs") == "/etc/hostname"
    assert os.readlink(copy / "sym_dir") == "sub"
    assert (copy / "empty").read_bytes() == b""
    assert list((copy / "emptydir").iterdir()) == []


def test_names_that_are_not_utf8_or_hold_newlines(restored: Restored) -> None:
    names = set(os.listdir(os.fsencode(restored.copy)))
    for name in ODD_NAMES:
        assert name in names, f"{name!r} not restored"
        with open(os.path.join(os.fsencode(restored.copy), name), "rb") as f:
            assert f.read() == b"odd name: " + name


def test_mode_bits_setuid_setgid_sticky(restored: Restored) -> None:
    def mode(name: str) -> int:
        return stat.S_IMODE(os.lstat(restored.copy / name).st_mode)

    assert mode("setuid") == 0o4755
    assert mode("setgid") == 0o2711
    assert mode("owned_setuid") == 0o6750  # chown must come before chmod
    assert mode("no_perms") == 0o000
    assert mode("sticky") == 0o1777
    assert mode("private") == 0o700


def test_numeric_owners_without_passwd_entry(restored: Restored) -> None:
    st = os.lstat(restored.copy / "owned_unknown")
    assert (st.st_uid, st.st_gid) == (UNKNOWN_UID, UNKNOWN_GID)
    st = os.lstat(restored.copy / "owned_setuid")
    assert (st.st_uid, st.st_gid) == (UNKNOWN_UID, UNKNOWN_GID)
    assert (os.lstat(restored.copy / "owned_nobody").st_uid) == NOBODY
    assert (os.lstat(restored.copy / "owned_dir").st_uid) == 1
    assert (os.lstat(restored.copy / "sym_rel").st_uid) == 2  # lchown, not the target
    assert (os.lstat(restored.copy / "fifo").st_gid) == 3


def test_mtimes_to_the_nanosecond_for_every_type(restored: Restored) -> None:
    for rel in ["regular.txt", "sub", "sub/deeper", "emptydir", "sym_rel", "dangling", "fifo"]:
        want = os.lstat(restored.source / rel).st_mtime_ns
        got = os.lstat(restored.copy / rel).st_mtime_ns
        assert got == want, f"{rel}: mtime {got} != {want}"
    assert os.lstat(restored.copy).st_mtime_ns == os.lstat(restored.source).st_mtime_ns


def test_extended_attributes(restored: Restored) -> None:
    copy = restored.copy
    assert os.getxattr(copy / "regular.txt", "user.comment") == b"hello"
    assert os.getxattr(copy / "regular.txt", "user.binary") == b"\x00\xff\x01"
    assert os.getxattr(copy / "sub", "user.on_dir") == b"dir attr"
    assert os.getxattr(copy / "empty", "user.empty_value") == b""


def test_incremental_backup_of_metadata_changes(tmp_path: Path) -> None:
    """Changes that keep mtime (owner, mode, xattrs, same-size rewrites) reach the next
    snapshot: the backup must not take such entries from the parent snapshot."""
    base = require_user_xattrs(tmp_path)
    src = base / "src"
    build_everything(src)
    repo = Repository.init(LocalStore(base / "repo"), PASSWORD, CHEAP_KDF)
    first = backup(repo, src)
    kept_mtime = os.lstat(src / "regular.txt").st_mtime_ns
    os.chown(src / "owned_nobody", UNKNOWN_UID, NOBODY)
    os.chmod(src / "setuid", 0o755)
    os.chmod(src / "private", 0o750)
    os.setxattr(src / "regular.txt", "user.comment", b"changed")
    os.setxattr(src / "emptydir", "user.new", b"new on a dir")
    (src / "regular.txt").write_bytes(b"HELLO, WORLD\n")  # same size ...
    os.utime(src / "sym_rel", ns=(1, 2), follow_symlinks=False)
    os.remove(src / "dangling")
    os.symlink("another/target", src / "dangling")
    set_mtimes(src)  # ... and every mtime as before
    assert os.lstat(src / "regular.txt").st_mtime_ns == kept_mtime
    second = backup(repo, src)
    assert second.snapshot.parent == first.snapshot.id
    assert second.stats.errors == []
    assert second.stats.files_unmodified > 0, "the parent snapshot was not used"
    target = base / "target"
    stats = restore(repo, second.snapshot.tree, target)
    assert stats.errors == []
    assert_same_tree(src, inside(target, src))


def test_backup_of_a_very_deep_tree(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src.joinpath(*["d"] * 400) / "leaf", b"leaf\n")
    result = backup(local_repo, src)
    assert result.stats.errors == []
    stats = restore(local_repo, result.snapshot.tree, tmp_path / "target")
    assert stats.errors == []
    assert_same_tree(src, inside(tmp_path / "target", src))


# ---- owners by name ------------------------------------------------------------------


def _owned(name: bytes, user: str, uid: int, group: str, gid: int) -> Node:
    return Node(name=name, type="dir", mode=0o755, uid=uid, gid=gid, user=user, group=group)


@pytest.mark.parametrize("numeric", [False, True])
def test_owner_by_name_or_numeric(local_repo: Repository, tmp_path: Path, numeric: bool) -> None:
    """By default a known user/group name wins over the stored number (as tar does)."""
    tree = save_tree(
        local_repo,
        [
            _owned(b"known", "nobody", 4242, "nogroup", 4343),
            _owned(b"unknown", "no-such-user-here", 4244, "no-such-group-here", 4345),
            _owned(b"nameless", "", 4246, "", 4347),
        ],
    )
    stats = restore(local_repo, tree, tmp_path / "t", numeric_owner=numeric)
    assert stats.errors == []

    def owner(name: str) -> tuple[int, int]:
        st = os.lstat(tmp_path / "t" / name)
        return st.st_uid, st.st_gid

    assert owner("known") == ((4242, 4343) if numeric else (NOBODY, NOBODY))
    assert owner("unknown") == (4244, 4345)
    assert owner("nameless") == (4246, 4347)


# ---- partial restore, overwrite policies, verification -------------------------------


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write(src / "a", b"alpha\n")
    write(src / "b", b"bravo\n")
    write(src / "d" / "c", b"charlie\n")
    write(src / "d" / "e" / "f", b"foxtrot\n")
    write(src / "other" / "g", b"golf\n")
    set_mtimes(src)
    return src


def _paths_below(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_restore_of_one_included_file(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    result = backup(local_repo, small_tree)
    target = tmp_path / "target"
    wanted = small_tree / "d" / "e" / "f"
    stats = restore(local_repo, result.snapshot.tree, target, includes=[str(wanted)])
    assert stats.errors == []
    assert stats.files_restored == 1
    copy = inside(target, small_tree)
    assert _paths_below(copy) == {"d", "d/e", "d/e/f"}
    assert (copy / "d" / "e" / "f").read_bytes() == b"foxtrot\n"
    assert os.lstat(copy / "d" / "e" / "f").st_mtime_ns == os.lstat(wanted).st_mtime_ns


def test_includes_are_absolute_and_normalised(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match="absolute"):
        Restorer(local_repo, RestoreOptions(includes=["d/e/f"]))
    result = backup(local_repo, small_tree)
    spelled = f"{small_tree}//d/./e/../e/f/"
    stats = restore(local_repo, result.snapshot.tree, tmp_path / "t", includes=[spelled])
    assert stats.errors == [] and stats.files_restored == 1
    assert _paths_below(inside(tmp_path / "t", small_tree)) == {"d", "d/e", "d/e/f"}


def test_restore_of_one_included_directory(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    result = backup(local_repo, small_tree)
    target = tmp_path / "target"
    stats = restore(
        local_repo, result.snapshot.tree, target, includes=[str(small_tree / "d") + "/"]
    )
    assert stats.errors == []
    copy = inside(target, small_tree)
    assert _paths_below(copy) == {"d", "d/c", "d/e", "d/e/f"}
    problems = diff_descriptions(describe_tree(small_tree / "d"), describe_tree(copy / "d"))
    assert problems == []


def _rewrite(path: Path, data: bytes, mtime_ns: int | None = None) -> None:
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_overwrite_never_keeps_existing_entries(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    result = backup(local_repo, small_tree)
    target = tmp_path / "target"
    restore(local_repo, result.snapshot.tree, target)
    copy = inside(target, small_tree)
    _rewrite(copy / "a", b"local edit, kept\n")
    (copy / "b").unlink()
    (copy / "d" / "c").unlink()
    os.symlink("elsewhere", copy / "d" / "c")  # a different type in the way: kept too
    stats = restore(local_repo, result.snapshot.tree, target, overwrite="never")
    assert stats.errors == []
    assert (copy / "a").read_bytes() == b"local edit, kept\n"
    assert (copy / "b").read_bytes() == b"bravo\n"  # missing ones are restored
    assert os.readlink(copy / "d" / "c") == "elsewhere"
    assert stats.files_skipped >= 2


def test_overwrite_if_changed_compares_size_and_mtime(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    result = backup(local_repo, small_tree)
    target = tmp_path / "target"
    restore(local_repo, result.snapshot.tree, target)
    copy = inside(target, small_tree)
    # same size and mtime as in the snapshot: considered unchanged, left alone
    same_mtime = os.lstat(small_tree / "a").st_mtime_ns
    _rewrite(copy / "a", b"ALPHA\n", same_mtime)
    # another size: rewritten; another mtime only: rewritten
    _rewrite(copy / "b", b"bravo, longer\n")
    _rewrite(copy / "d" / "c", b"CHARLIE\n", same_mtime + 1)
    stats = restore(local_repo, result.snapshot.tree, target, overwrite="if-changed")
    assert stats.errors == []
    assert (copy / "a").read_bytes() == b"ALPHA\n"
    assert (copy / "b").read_bytes() == b"bravo\n"
    assert (copy / "d" / "c").read_bytes() == b"charlie\n"
    assert stats.files_skipped == 3  # a, d/e/f and other/g were unchanged
    assert stats.files_restored == 2


def test_overwrite_always_restores_everything(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    result = backup(local_repo, small_tree)
    target = tmp_path / "target"
    restore(local_repo, result.snapshot.tree, target)
    copy = inside(target, small_tree)
    same_mtime = os.lstat(small_tree / "a").st_mtime_ns
    _rewrite(copy / "a", b"ALPHA\n", same_mtime)
    (copy / "b").unlink()
    os.symlink("/nowhere", copy / "b")
    os.chmod(copy / "d" / "c", 0o600)
    stats = restore(local_repo, result.snapshot.tree, target, overwrite="always")
    assert stats.errors == []
    assert stats.files_skipped == 0
    assert_same_tree(small_tree, copy)


def test_verify_reads_back_every_file(
    local_repo: Repository, small_tree: Path, tmp_path: Path
) -> None:
    write(small_tree / "big", os.urandom(2 * 1024 * 1024))
    write(small_tree / "empty")
    result = backup(local_repo, small_tree)
    stats = restore(local_repo, result.snapshot.tree, tmp_path / "target", verify=True)
    assert stats.errors == []
    assert stats.files_verified == stats.files_restored == 7
    assert_same_tree(small_tree, inside(tmp_path / "target", small_tree))
