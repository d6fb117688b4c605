"""Reading snapshots without restoring them (ls, find, diff, dump, stats) and what a
backup leaves out (exclude patterns, caches, other file systems)."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from safehold.archive.browse import diff_trees, dump_file, find_node, size_stats, walk, walk_path
from safehold.archive.excludes import CACHEDIR_SIGNATURE, Excluder
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from tests.archive.helpers import backup, deep_tree, set_mtimes, write


def rel_paths(entries: Iterator[tuple[bytes, object]], root: Path) -> list[str]:
    """The paths below ``root`` among ``(absolute path, node)`` pairs, relative to it."""
    prefix = os.fsencode(root) + b"/"
    return [os.fsdecode(p.removeprefix(prefix)) for p, _ in entries if p.startswith(prefix)]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write(src / "a.txt", b"alpha\n")
    write(src / "d" / "b.txt", b"bravo\n")
    write(src / "d" / "e" / "f.bin", os.urandom(3 * 1024 * 1024))
    os.symlink("a.txt", src / "link")
    (src / "empty").mkdir()
    return src


# ---- ls / walk / find ------------------------------------------------------------------


def test_walk_lists_every_entry_depth_first(local_repo: Repository, src: Path) -> None:
    snapshot = backup(local_repo, src).snapshot
    paths = rel_paths(walk(local_repo, snapshot.tree, b""), src)
    assert paths == ["a.txt", "d", "d/b.txt", "d/e", "d/e/f.bin", "empty", "link"]
    # the parents of the backed-up path are in the snapshot too, as in restic
    every = [p for p, _ in walk(local_repo, snapshot.tree, b"")]
    assert os.fsencode(src) in every and os.fsencode(src.parent) in every


def test_walk_path_starts_at_the_entry(local_repo: Repository, src: Path) -> None:
    snapshot = backup(local_repo, src).snapshot
    entries = list(walk_path(local_repo, snapshot, str(src / "d") + "/"))
    assert entries[0][0] == os.fsencode(src / "d")
    assert rel_paths(iter(entries), src) == ["d", "d/b.txt", "d/e", "d/e/f.bin"]
    (single,) = walk_path(local_repo, snapshot, str(src / "a.txt"))
    assert single[1].type == "file" and single[1].size == 6


def test_find_node_and_its_errors(local_repo: Repository, src: Path) -> None:
    snapshot = backup(local_repo, src).snapshot
    assert find_node(local_repo, snapshot, "/") is None
    node = find_node(local_repo, snapshot, str(src / "d" / "e" / "f.bin"))
    assert node is not None and node.type == "file" and node.size == 3 * 1024 * 1024
    link = find_node(local_repo, snapshot, str(src / "link"))
    assert link is not None and link.type == "symlink" and link.target == b"a.txt"
    with pytest.raises(InvalidArgument, match="not in snapshot"):
        find_node(local_repo, snapshot, str(src / "missing"))
    with pytest.raises(InvalidArgument, match="not in snapshot"):
        find_node(local_repo, snapshot, str(src / "a.txt" / "below_a_file"))
    with pytest.raises(InvalidArgument, match="absolute"):
        find_node(local_repo, snapshot, "relative/path")


# ---- diff ------------------------------------------------------------------------------


def test_diff_reports_added_removed_modified_and_type_changes(
    local_repo: Repository, src: Path
) -> None:
    write(src / "gone" / "x", b"x\n")
    write(src / "gone" / "y", b"y\n")
    write(src / "becomes_dir", b"file for now\n")
    write(src / "mode", b"mode\n", 0o644)
    write(src / "touched", b"same content\n")
    os.symlink("old-target", src / "retarget")
    write(src / "was_dir" / "child", b"child\n")
    write(src / "chmod_dir" / "unchanged", b"same\n")
    before = backup(local_repo, src).snapshot

    write(src / "a.txt", b"alpha, edited\n")
    os.remove(src / "d" / "b.txt")
    for name in ("x", "y"):
        os.remove(src / "gone" / name)
    os.rmdir(src / "gone")
    os.remove(src / "becomes_dir")
    write(src / "becomes_dir" / "inside", b"now a dir\n")
    write(src / "new" / "deep" / "file", b"new\n")
    os.chmod(src / "mode", 0o600)
    os.utime(src / "touched", ns=(1, 1))  # metadata only: not a change of content
    os.remove(src / "retarget")
    os.symlink("new-target", src / "retarget")
    os.remove(src / "was_dir" / "child")
    os.rmdir(src / "was_dir")
    write(src / "was_dir", b"a file now\n")
    os.chmod(src / "chmod_dir", 0o700)
    after = backup(local_repo, src).snapshot

    changes = {
        (kind, os.fsdecode(path.removeprefix(os.fsencode(src) + b"/")))
        for kind, path, _ in diff_trees(local_repo, before.tree, after.tree)
        if path.startswith(os.fsencode(src) + b"/")
    }
    assert changes == {
        ("M", "a.txt"),
        ("-", "d/b.txt"),
        ("-", "gone"),
        ("-", "gone/x"),
        ("-", "gone/y"),
        ("T", "becomes_dir"),
        ("+", "becomes_dir/inside"),
        ("T", "was_dir"),
        ("-", "was_dir/child"),
        ("M", "chmod_dir"),  # a directory's own mode, its contents unchanged
        ("+", "new"),
        ("+", "new/deep"),
        ("+", "new/deep/file"),
        ("M", "mode"),
        ("M", "retarget"),
    }
    assert list(diff_trees(local_repo, after.tree, after.tree)) == []


# ---- dump and sizes ----------------------------------------------------------------------


def test_dump_file_writes_the_exact_contents(local_repo: Repository, src: Path) -> None:
    snapshot = backup(local_repo, src).snapshot
    node = find_node(local_repo, snapshot, str(src / "d" / "e" / "f.bin"))
    assert node is not None and len(node.content) > 1, "want a file of several chunks"
    out = io.BytesIO()
    assert dump_file(local_repo, node, out) == node.size
    assert out.getvalue() == (src / "d" / "e" / "f.bin").read_bytes()
    empty = io.BytesIO()
    write(src / "zero", b"")
    zero = find_node(local_repo, backup(local_repo, src).snapshot, str(src / "zero"))
    assert zero is not None and dump_file(local_repo, zero, empty) == 0
    directory = find_node(local_repo, snapshot, str(src / "d"))
    assert directory is not None
    with pytest.raises(InvalidArgument, match="not a file"):
        dump_file(local_repo, directory, io.BytesIO())


def test_size_stats_see_duplicated_data_once(local_repo: Repository, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024)
    src = tmp_path / "dup"
    write(src / "one", data)
    write(src / "two", data)
    write(src / "sub" / "three", data)
    first = backup(local_repo, src).snapshot
    write(src / "four", b"a little more\n")
    second = backup(local_repo, src).snapshot
    stats = size_stats(local_repo, [first])
    assert stats.snapshots == 1 and stats.files == 3
    assert stats.logical_size == 3 * len(data)
    assert len(data) <= stats.unique_raw_size < len(data) + 64 * 1024  # data once, plus trees
    assert stats.dedup_ratio > 2.9
    assert stats.stored_size > 0 and stats.compression_ratio == pytest.approx(1.0, rel=0.05)
    both = size_stats(local_repo, [first, second])
    assert both.files == 7 and both.logical_size == 6 * len(data) + 14
    assert both.dedup_ratio > 5.8


def test_size_stats_read_each_tree_once(local_repo: Repository, tmp_path: Path) -> None:
    """Repeated snapshots count their files each time but their trees are read once."""
    src = tmp_path / "src"
    for i in range(5):
        write(src / f"d{i}" / "file", bytes([i]) * 1000)
    snapshots = [backup(local_repo, src).snapshot for _ in range(3)]
    assert len({s.tree for s in snapshots}) == 1
    loads: list[str] = []
    load = local_repo.load_tree_document

    def counting(tree_id: str) -> dict[str, object]:
        loads.append(tree_id)
        return load(tree_id)

    # instrumentation, not a fault: the only way to see how often a tree is read
    local_repo.load_tree_document = counting  # type: ignore[method-assign]
    stats = size_stats(local_repo, snapshots)
    assert stats.files == 15 and stats.logical_size == 15_000
    assert len(loads) == len(set(loads)), "a tree was read more than once"


# ---- excludes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("*.log", "/var/app/server.log", True),
        ("*.log", "/var/app/server.log.1", False),
        ("*.log", "/var/logs.d", False),
        ("node_modules", "/home/u/p/node_modules", True),
        ("node_modules/", "/home/u/p/node_modules", True),  # a trailing "/" is ignored
        ("/home/u/cache", "/home/u/cache", True),
        ("/home/u/cache", "/home/u/cache2", False),
        ("/home/u/cache", "/srv/home/u/cache", False),  # a leading "/" anchors
        ("/home/*/cache", "/home/u/cache", True),
        ("/home/*/cache", "/home/u/sub/cache", False),  # "*" does not cross "/"
        ("/home/**/cache", "/home/cache", True),  # "**" spans zero directories ...
        ("/home/**/cache", "/home/u/a/b/cache", True),  # ... or several
        ("/home/**/cache", "/srv/home/u/cache", False),
        ("/home/u/**", "/home/u/anything", True),
        ("u/cache", "/home/u/cache", True),  # relative: matches the last components
        ("u/cache", "/home/xu/cache", False),
        ("/home/u/?.txt", "/home/u/a.txt", True),
        ("/home/u/?.txt", "/home/u/ab.txt", False),
        ("/home/u/[ab].txt", "/home/u/b.txt", True),
        ("/home/u/[!ab].txt", "/home/u/c.txt", True),
        ("/home/u/[!ab].txt", "/home/u/a.txt", False),
    ],
)
def test_exclude_patterns(pattern: str, path: str, excluded: bool) -> None:
    name = os.fsencode(path.rsplit("/", 1)[1])
    assert Excluder([pattern]).excludes(os.fsencode(path), name) is excluded


def test_excludes_in_a_backup(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    rels: list[str | bytes] = [
        "keep.txt",
        "debug.log",
        "app/run.log",
        "app/data.db",
        "app/tmp/scratch",
        "app/sub/tmp/scratch",
        "deep/a/b/c/secret.key",
        "deep/a/public.pem",
        b"odd-\xff.bak",
    ]
    for rel in rels:
        write(os.path.join(os.fsencode(src), os.fsencode(rel)), b"x")
    patterns = [
        "*.log",
        str(src / "app" / "*" / "scratch"),
        str(src / "deep" / "**" / "*.key"),
        "*.bak",
    ]
    snapshot = backup(local_repo, src, excludes=patterns).snapshot
    files = {
        p
        for p in rel_paths(walk(local_repo, snapshot.tree, b""), src)
        if "." in p or "scratch" in p
    }
    assert files == {"keep.txt", "app/data.db", "app/sub/tmp/scratch", "deep/a/public.pem"}


def test_exclude_caches_keeps_only_the_tag(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "cache" / "CACHEDIR.TAG", CACHEDIR_SIGNATURE + b"\n# a cache\n")
    write(src / "cache" / "blob", b"cached")
    write(src / "cache" / "sub" / "more", b"cached")
    write(src / "fake" / "CACHEDIR.TAG", b"Signature: not the right one\n")
    write(src / "fake" / "data", b"kept")
    write(src / "plain", b"kept")
    excluded = backup(local_repo, src, exclude_caches=True).snapshot
    assert rel_paths(walk(local_repo, excluded.tree, b""), src) == [
        "cache",
        "cache/CACHEDIR.TAG",
        "fake",
        "fake/CACHEDIR.TAG",
        "fake/data",
        "plain",
    ]
    kept = backup(local_repo, src).snapshot
    assert "cache/sub/more" in rel_paths(walk(local_repo, kept.tree, b""), src)


# ---- one file system ---------------------------------------------------------------------


@pytest.fixture
def with_mount(tmp_path: Path) -> Iterator[Path]:
    """A tree with a tmpfs mounted inside it (unmounted however the test ends)."""
    src = tmp_path / "src"
    write(src / "outer", b"on the root file system\n")
    mnt = src / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        write(mnt / "inner", b"on the tmpfs\n")
        (mnt / "subdir").mkdir()
        yield src
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_one_file_system_keeps_the_mount_point_but_not_its_contents(
    local_repo: Repository, with_mount: Path
) -> None:
    src = with_mount
    snap = backup(local_repo, src, one_file_system=True).snapshot
    assert rel_paths(walk(local_repo, snap.tree, b""), src) == ["mnt", "outer"]
    everything = backup(local_repo, src, force=True).snapshot
    assert rel_paths(walk(local_repo, everything.tree, b""), src) == [
        "mnt",
        "mnt/inner",
        "mnt/subdir",
        "outer",
    ]


def test_mount_point_metadata_comes_from_the_mounted_root(
    local_repo: Repository, with_mount: Path
) -> None:
    src = with_mount
    set_mtimes(src / "mnt")
    snap: Snapshot = backup(local_repo, src, one_file_system=True).snapshot
    node = find_node(local_repo, snap, str(src / "mnt"))
    assert node is not None and node.type == "dir"
    assert node.mtime_ns == os.lstat(src / "mnt").st_mtime_ns


# ---- depth ---------------------------------------------------------------------------------


def test_walk_diff_and_stats_of_a_very_deep_tree(local_repo: Repository) -> None:
    """Deeper than Python's recursion limit: the readers must not recurse per level."""
    depth = 1200
    old = deep_tree(local_repo, depth, b"old\n")
    new = deep_tree(local_repo, depth, b"new, longer\n")
    leaf = b"/d" * depth + b"/leaf"
    paths = [p for p, _ in walk(local_repo, old, b"")]
    assert len(paths) == depth + 1 and paths[-1] == leaf
    assert [(kind, path) for kind, path, _ in diff_trees(local_repo, old, new)] == [("M", leaf)]
    snapshot = Snapshot(time="2026-01-01T00:00:00+00:00", tree=new, paths=["/d"], hostname="h")
    stats = size_stats(local_repo, [snapshot])
    assert stats.files == 1 and stats.logical_size == len(b"new, longer\n")
    node = find_node(local_repo, snapshot, os.fsdecode(leaf))
    assert node is not None and node.size == 12
