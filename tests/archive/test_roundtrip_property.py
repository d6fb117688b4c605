"""Properties of backup and restore over random trees (hypothesis).

Each example builds a real tree on disk and a real repository with small chunks, so that
files of a few hundred KiB span many chunks and packs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from safehold.archive.browse import diff_trees, dump_file, find_node, size_stats, walk_path
from safehold.archive.excludes import Excluder
from safehold.archive.find import Finder
from safehold.archive.restore import RestoreOptions, Restorer
from safehold.archive.restore_plan import plan_restore
from safehold.archive.tree import Node, node_doc
from safehold.errors import SafeholdError
from safehold.ops.check import DataSubset, check
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.storage import LocalStore
from tests.archive.helpers import (
    assert_same_tree,
    backup,
    inside,
    restore,
    set_mtimes,
    write,
)
from tests.conftest import CHEAP_KDF, PASSWORD

CHUNK_MIN, CHUNK_AVG, CHUNK_MAX = 4096, 4096, 65536
SMALL_CHUNKS = {
    "chunk_min": CHUNK_MIN,
    "chunk_avg": CHUNK_AVG,
    "chunk_max": CHUNK_MAX,
    "pack_size": 256 * 1024,
}
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- strategies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """File contents described compactly, so hypothesis shrinks sizes, not megabytes."""

    size: int
    seed: int
    kind: str  # "random", "zeros" (holes on restore), "text" (compressible), "mixed"

    def render(self) -> bytes:
        rng = random.Random(self.seed)
        if self.kind == "zeros":
            return bytes(self.size)
        if self.kind == "text":
            words = [b"alpha ", b"bravo ", b"charlie\n", b"delta ", b"echo\t"]
            out = b"".join(rng.choice(words) for _ in range(self.size // 5 + 1))
            return out[: self.size]
        if self.kind == "mixed":  # random runs and zero runs: sparse writes at odd offsets
            mixed = bytearray()
            while len(mixed) < self.size:
                n = rng.randrange(1, 40_000)
                mixed += rng.randbytes(n) if rng.random() < 0.5 else bytes(n)
            return bytes(mixed[: self.size])
        return rng.randbytes(self.size)


@dataclass(frozen=True)
class Symlink:
    target: bytes


sizes = st.one_of(
    st.just(0),
    st.integers(1, 100),
    st.integers(CHUNK_MIN - 2, CHUNK_MIN + 2),
    st.integers(CHUNK_MAX, 3 * CHUNK_MAX),  # beyond one chunk, whatever the cut points
)
contents = st.builds(
    Content,
    size=sizes,
    seed=st.integers(0, 2**32),
    kind=st.sampled_from(["random", "zeros", "text", "mixed"]),
)
names = st.binary(min_size=1, max_size=12).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
)
symlinks = st.builds(
    Symlink, target=st.binary(min_size=1, max_size=30).filter(lambda t: b"\0" not in t)
)
leaves = st.one_of(contents, contents, symlinks)
Tree = dict[bytes, Union[Content, Symlink, "Tree"]]
trees: st.SearchStrategy[Tree] = st.recursive(
    st.dictionaries(names, leaves, max_size=4),
    lambda children: st.dictionaries(names, st.one_of(leaves, children), max_size=4),
    max_leaves=14,
)


def build(root: bytes, tree: Tree) -> int:
    """Write ``tree`` under ``root``; returns the number of files."""
    os.makedirs(root, exist_ok=True)
    count = 0
    for name, item in tree.items():
        path = os.path.join(root, name)
        if isinstance(item, Content):
            write(path, item.render())
            count += 1
        elif isinstance(item, Symlink):
            os.symlink(item.target, path)
        else:
            count += build(path, item)
    return count


@contextmanager
def workspace() -> Iterator[tuple[Path, Repository]]:
    """A fresh directory and repository per example (pytest's tmp_path is per test)."""
    base = Path(tempfile.mkdtemp(prefix="safehold-prop-"))
    try:
        repo = Repository.init(LocalStore(base / "repo"), PASSWORD, CHEAP_KDF, **SMALL_CHUNKS)
        yield base, repo
    finally:
        shutil.rmtree(base)


# ---- properties ------------------------------------------------------------------------


@EXAMPLES
@given(tree=trees)
def test_backup_then_restore_gives_the_same_tree(tree: Tree) -> None:
    with workspace() as (base, repo):
        src = base / "src"
        build(os.fsencode(src), tree)
        set_mtimes(src)
        result = backup(repo, src)
        assert result.stats.errors == []
        stats = restore(repo, result.snapshot.tree, base / "target")
        assert stats.errors == []
        assert_same_tree(src, inside(base / "target", src))


@EXAMPLES
@given(tree=trees)
def test_second_backup_of_an_unchanged_tree_reads_nothing(tree: Tree) -> None:
    with workspace() as (base, repo):
        src = base / "src"
        files = build(os.fsencode(src), tree)
        first = backup(repo, src)
        second = backup(repo, src)
        assert second.snapshot.parent == first.snapshot.id
        assert second.stats.files_unmodified == files
        assert second.stats.files_new == second.stats.files_changed == 0
        assert second.stats.errors == []
        # at most a new root tree: the directories above src (in /tmp) may have changed
        assert second.data_added <= 4096, second.summary()
        if second.snapshot.tree == first.snapshot.tree:
            assert second.data_added == 0


@EXAMPLES
@given(
    size=st.integers(256 * 1024, 1024 * 1024),
    seed=st.integers(0, 2**32),
    where=st.floats(0.0, 1.0),
    edit=st.binary(min_size=1, max_size=64),
    insert=st.booleans(),
)
def test_small_edit_to_a_big_file_adds_about_the_edit(
    size: int, seed: int, where: float, edit: bytes, insert: bool
) -> None:
    with workspace() as (base, repo):
        src = base / "src"
        path = src / "big.bin"
        original = random.Random(seed).randbytes(size)
        write(path, original)
        write(src / "other", b"unchanged\n")
        first = backup(repo, src)
        at = int(where * (size - len(edit)))
        edited = original[:at] + edit + original[at + (0 if insert else len(edit)) :]
        assume(edited != original)  # an "edit" that rewrites the same bytes changes nothing
        path.write_bytes(edited)
        st_ = os.stat(path)
        os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
        second = backup(repo, src)
        assert second.stats.files_changed == 1 and second.stats.files_unmodified == 1
        # the chunk holding the edit (and perhaps its neighbour), the trees, a pack header
        budget = 2 * CHUNK_MAX + 8 * 1024
        assert second.data_added <= budget, (second.data_added, first.data_added)
        assert first.data_added > size  # random data does not compress: the yardstick
        restored = base / "target"
        restore(repo, second.snapshot.tree, restored)
        assert (inside(restored, src) / "big.bin").read_bytes() == edited


# ---- damaged documents ---------------------------------------------------------------------
# Whoever shares the password can write any tree, snapshot or index document. Whatever
# they write, every command ends in safehold's own errors (one clear line), never another
# exception: restore, ls, find, dump, stats and check run here on random damage.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["", "..", "/", "a/b", "x" * 64, "ab" * 32, "AB" * 32, "data", "tree"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
NODE_FIELDS = ["name", "name_b64", "type", "mode", "uid", "gid", "user", "group", "mtime_ns"]
NODE_FIELDS += [
    "inode",
    "device",
    "links",
    "size",
    "content",
    "subtree",
    "target",
    "rdev",
    "xattrs",
]
OTHER_FIELDS = ["tree", "paths", "time", "packs", "id", "offset", "length", "raw_length", "blobs"]
damages = st.lists(
    st.tuples(
        st.sampled_from([*NODE_FIELDS, *OTHER_FIELDS]), st.one_of(st.just(None), json_values)
    ),
    min_size=1,
    max_size=3,
)


def damaged(doc: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    """``doc`` with some fields replaced by random JSON (None: the field removed)."""
    out = dict(doc)
    for key, value in changes:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def commands_on(repo: Repository, target: Path) -> None:
    """Every reading command, as the CLI runs it; only safehold's errors may come out."""
    again = Repository.open(repo.store, PASSWORD)
    again.load_index()
    for snapshot in again.list_snapshots():
        for command in (restore_all, restore_some, ls_all, dump_one, stats_of, find_diff):
            with contextlib.suppress(SafeholdError):
                command(again, snapshot, target)
    check(again, DataSubset())


def restore_all(repo: Repository, snapshot: Snapshot, target: Path) -> None:
    Restorer(repo, RestoreOptions(workers=2)).restore(
        snapshot.tree, str(target / snapshot.id), snapshot
    )


def restore_some(repo: Repository, snapshot: Snapshot, target: Path) -> None:
    """--include, and its dry run."""
    options = RestoreOptions(includes=["/dir"], workers=2)
    list(plan_restore(repo, snapshot.tree, str(target / "plan"), options))
    Restorer(repo, options).restore(snapshot.tree, str(target / "some" / snapshot.id), snapshot)


def find_diff(repo: Repository, snapshot: Snapshot, _: Path) -> None:
    Finder(repo, Excluder(["file"])).find(snapshot)
    list(diff_trees(repo, None, snapshot.tree))


def ls_all(repo: Repository, snapshot: Snapshot, _: Path) -> None:
    list(walk_path(repo, snapshot, "/"))


def dump_one(repo: Repository, snapshot: Snapshot, _: Path) -> None:
    node = find_node(repo, snapshot, "/dir/file")
    assert node is not None
    dump_file(repo, node, io.BytesIO())


def stats_of(repo: Repository, snapshot: Snapshot, _: Path) -> None:
    size_stats(repo, [snapshot])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree_damage=damages,
    snapshot_damage=damages,
    index_damage=damages,
    whole=st.one_of(st.none(), json_values),
)
def test_damaged_documents_end_in_safeholds_own_errors(
    tree_damage: list[tuple[str, Any]],
    snapshot_damage: list[tuple[str, Any]],
    index_damage: list[tuple[str, Any]],
    whole: Any,
) -> None:
    with workspace() as (base, repo):
        data = b"file content\n"
        with repo.writer() as writer:
            blob, _ = writer.save(BlobType.DATA, data)
            file = Node(name=b"file", type="file", mode=0o644, size=len(data), content=[blob])
            good = node_doc(file)
            bad = damaged(good, tree_damage)
            text = {"nodes": [good, bad]} if whole is None else whole
            raw = json.dumps(text, separators=(",", ":")).encode()
            sub, _ = writer.save(BlobType.TREE, raw)
            top = Node(name=b"dir", type="dir", mode=0o755, subtree=sub.hex())
            root, _ = writer.save(
                BlobType.TREE,
                json.dumps({"nodes": [damaged(node_doc(top), tree_damage[:1])]}).encode(),
            )
        snapshot = Snapshot(
            time="2026-01-01T00:00:00Z", tree=root.hex(), paths=["/dir"], hostname="h"
        )
        repo.save_snapshot(snapshot)
        repo.save_document(
            "snapshots",
            json.dumps(damaged(json.loads(snapshot.to_bytes()), snapshot_damage)).encode(),
        )
        loc = repo.locate(blob)
        entry = {"id": blob.hex(), "type": "data", "offset": loc.offset, "length": loc.length}
        entry["raw_length"] = loc.raw_length
        pack = damaged({"id": loc.pack, "blobs": [damaged(entry, index_damage)]}, index_damage[1:])
        repo.save_document("index", json.dumps({"packs": [pack]}).encode())
        commands_on(repo, base / "target")
