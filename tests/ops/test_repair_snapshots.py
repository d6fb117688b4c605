"""repair snapshots on real repositories: lost file data, lost subtrees, lost roots.

Damage is made as it happens: a pack deleted from the store, a byte flipped in one. After
``repair snapshots --forget`` (and ``repair index`` for the lost packs) check passes and
every file that kept all its data restores byte-identical.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from safehold.archive.browse import find_node
from safehold.archive.tree import Node, decode_tree, encode_docs, node_doc
from safehold.errors import IndexNeedsRepair
from safehold.ops.check import check
from safehold.ops.repair import rebuild_index
from safehold.ops.repair_snapshots import (
    REPAIRED_TAG,
    RepairSnapshotsResult,
    SnapshotRepair,
    repair_snapshots,
    select_snapshots,
)
from safehold.repo.index import Index
from safehold.repo.repository import Repository, pack_key
from safehold.repo.snapshot import Snapshot, now
from safehold.storage import LocalStore, MemoryStore
from tests.archive.helpers import (
    backup,
    describe_tree,
    inside,
    restore,
    save_data,
    save_raw_tree,
    write,
)
from tests.conftest import CHEAP_KDF, PASSWORD

SMALL_PACKS = 64 * 1024  # one 100 KB file per data pack, so a lost pack costs one file
FILES = ("a.bin", "b.bin", "small.txt", "sub/c.bin", "sub/deep/d.bin")


@dataclass
class Setup:
    repo: Repository
    data: Path
    other: Path  # backed up on its own: a snapshot no damage below touches


def make_setup(tmp_path: Path, store: str = "local") -> Setup:
    backing = LocalStore(tmp_path / "repo") if store == "local" else MemoryStore()
    repo = Repository.init(backing, PASSWORD, CHEAP_KDF, pack_size=SMALL_PACKS)
    rng = random.Random(11)
    data, other = tmp_path / "data", tmp_path / "other"
    for name in FILES:
        write(data / name, b"hello\n" if name == "small.txt" else rng.randbytes(100_000))
    write(other / "o.bin", rng.randbytes(100_000))
    return Setup(repo, data, other)


def snapshot_of(repo: Repository, path: Path) -> Snapshot:
    (found,) = [s for s in repo.list_snapshots() if s.paths == [str(path)]]
    return found


def data_pack(repo: Repository, snapshot: Snapshot, path: Path) -> str:
    node = find_node(repo, snapshot, str(path))
    assert node is not None and node.content
    return repo.locate(node.content[0]).pack


def tree_pack(repo: Repository, snapshot: Snapshot, path: Path) -> str:
    node = find_node(repo, snapshot, str(path))
    assert node is not None and node.subtree
    return repo.locate(bytes.fromhex(node.subtree)).pack


def run(
    repo: Repository, dry_run: bool = False, forget: bool = False, read_data: bool = False
) -> RepairSnapshotsResult:
    """As the command runs it: a fresh index, every snapshot."""
    repo.index = Index()
    repo.load_index()
    chosen, unreadable = select_snapshots(repo, [])
    return repair_snapshots(
        repo, chosen, unreadable, dry_run=dry_run, forget=forget, read_data=read_data
    )


def by_id(result: RepairSnapshotsResult, snapshot_id: str) -> SnapshotRepair:
    (entry,) = [r for r in result.snapshots if r.snapshot_id == snapshot_id]
    return entry


def store_keys(repo: Repository) -> set[str]:
    return {
        info.key for prefix in ("data/", "index/", "snapshots/") for info in repo.store.list(prefix)
    }


def assert_check_passes(repo: Repository) -> None:
    result = check(repo)
    assert result.ok and not result.warnings, result


def restored_files(repo: Repository, snapshot: Snapshot, target: Path) -> dict[Path, bytes]:
    stats = restore(repo, snapshot.tree, target)
    assert not stats.errors, stats.errors
    return {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}


@pytest.mark.parametrize("store", ["local", "memory"])
def test_lost_file_data_is_cut_out_and_the_rest_restores(tmp_path: Path, store: str) -> None:
    s = make_setup(tmp_path, store)
    backup(s.repo, s.data)
    backup(s.repo, s.other)
    original, untouched = snapshot_of(s.repo, s.data), snapshot_of(s.repo, s.other)
    victim = s.data / "b.bin"
    s.repo.store.delete(pack_key(data_pack(s.repo, original, victim)))
    assert not check(s.repo).ok

    result = run(s.repo)  # no repair index: the missing pack alone tells the blob is lost
    assert result.ok and not result.dry_run
    assert by_id(result, untouched.id).status == "unchanged"
    entry = by_id(result, original.id)
    assert entry.status == "repaired" and not entry.forgotten and entry.new_id
    assert [(c.path, c.kind) for c in entry.changes] == [(str(victim), "file")]
    assert "1 of 1 blobs lost; 0 of 100000 bytes kept" in entry.changes[0].detail

    ids = {x.id for x in s.repo.list_snapshots()}
    assert ids == {original.id, untouched.id, entry.new_id}  # the original is kept
    repaired = next(x for x in s.repo.list_snapshots() if x.id == entry.new_id)
    assert repaired.tree == entry.new_tree != original.tree
    assert repaired.tags == [*original.tags, REPAIRED_TAG]
    assert repaired.original == original.id and repaired.source == {}
    for kept in ("time", "paths", "hostname", "username", "parent", "summary", "program_version"):
        assert getattr(repaired, kept) == getattr(original, kept), kept

    # restic's rule: the file stays, holding what is left of it (here nothing)
    s.repo.load_index()
    files = restored_files(s.repo, repaired, tmp_path / "restore")
    for name in FILES:
        source = s.data / name
        want = b"" if source == victim else source.read_bytes()
        assert files.pop(inside(tmp_path / "restore", source)) == want, name
    assert files == {}

    forgotten = run(s.repo, forget=True)
    assert by_id(forgotten, original.id).status == "already_repaired"
    assert by_id(forgotten, original.id).forgotten
    assert by_id(forgotten, entry.new_id).status == "unchanged"
    assert {x.id for x in s.repo.list_snapshots()} == {untouched.id, entry.new_id}
    rebuild_index(s.repo)
    assert_check_passes(s.repo)


def two_backups_sharing_a_subtree(s: Setup) -> tuple[Snapshot, Snapshot, str]:
    """The first snapshot's trees all lie in one pack; the second, after a.bin changed,
    has new trees down to data/ in another pack and reuses sub/ (and sub/deep/) from the
    first. Returns both snapshots and the first tree pack."""
    first = backup(s.repo, s.data).snapshot
    write(s.data / "a.bin", random.Random(5).randbytes(100_000))
    second = backup(s.repo, s.data).snapshot
    pack = s.repo.locate(bytes.fromhex(first.tree)).pack
    assert tree_pack(s.repo, second, s.data / "sub") == pack
    assert s.repo.locate(bytes.fromhex(second.tree)).pack != pack
    return first, second, pack


def test_lost_subtree_becomes_empty_and_lost_root_is_unrepairable(tmp_path: Path) -> None:
    s = make_setup(tmp_path)
    first, second, pack = two_backups_sharing_a_subtree(s)
    untouched = backup(s.repo, s.other).snapshot
    sub_before = describe_tree(s.data / "sub")[0][b"."]
    s.repo.store.delete(pack_key(pack))
    rebuild_index(s.repo)

    result = run(s.repo, forget=True)
    assert not result.ok
    statuses = {r.snapshot_id: r.status for r in result.snapshots}
    assert statuses == {first.id: "unrepairable", second.id: "repaired", untouched.id: "unchanged"}
    lost_root = next(r for r in result.snapshots if r.snapshot_id == first.id)
    assert "root tree cannot be loaded" in lost_root.reason and lost_root.forgotten
    entry = next(r for r in result.snapshots if r.snapshot_id == second.id)
    assert [(c.path, c.kind) for c in entry.changes] == [(str(s.data / "sub"), "dir")]
    assert "now an empty directory" in entry.changes[0].detail
    assert {x.id for x in s.repo.list_snapshots()} == {untouched.id, entry.new_id}
    assert_check_passes(s.repo)

    target = tmp_path / "restore"
    repaired = next(x for x in s.repo.list_snapshots() if x.id == entry.new_id)
    files = restored_files(s.repo, repaired, target)
    expected = {inside(target, s.data / n): (s.data / n).read_bytes() for n in FILES[:3]}
    assert files == expected
    sub = inside(target, s.data / "sub")
    assert os.listdir(sub) == []
    got = describe_tree(sub)[0][b"."]
    assert (got.mode, got.uid, got.gid, got.mtime_ns) == (
        sub_before.mode,
        sub_before.uid,
        sub_before.gid,
        sub_before.mtime_ns,
    )

    again = run(s.repo)  # idempotent: nothing left to repair, nothing written
    assert again.ok and {r.status for r in again.snapshots} == {"unchanged"}
    assert again.trees_written == 0


def test_dry_run_writes_nothing_and_predicts_the_run(tmp_path: Path) -> None:
    s = make_setup(tmp_path)
    _, second, pack = two_backups_sharing_a_subtree(s)
    s.repo.store.delete(pack_key(data_pack(s.repo, second, s.data / "small.txt")))
    s.repo.store.delete(pack_key(pack))
    rebuild_index(s.repo)
    before = store_keys(s.repo)

    dry = run(s.repo, dry_run=True, forget=True)
    assert store_keys(s.repo) == before
    assert dry.dry_run and dry.trees_written > 0
    assert all(r.new_id is None for r in dry.snapshots)
    assert {r.status for r in dry.snapshots} == {"unrepairable", "repaired"}
    assert all(r.forgotten for r in dry.snapshots)  # would be

    real = run(s.repo, forget=True)
    assert store_keys(s.repo) != before
    assert real.trees_written == dry.trees_written
    for d, r in zip(dry.snapshots, real.snapshots, strict=True):
        assert (d.snapshot_id, d.status, d.changes, d.new_tree, d.forgotten) == (
            r.snapshot_id,
            r.status,
            r.changes,
            r.new_tree,
            r.forgotten,
        )
    paths = {c.path for r in real.snapshots for c in r.changes}
    assert paths == {str(s.data / "small.txt"), str(s.data / "sub")}
    assert_check_passes(s.repo)


def test_running_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    s = make_setup(tmp_path)
    snapshot = backup(s.repo, s.data).snapshot
    s.repo.store.delete(pack_key(data_pack(s.repo, snapshot, s.data / "a.bin")))
    rebuild_index(s.repo)
    first = run(s.repo)
    (entry,) = first.snapshots
    assert entry.status == "repaired" and first.trees_written > 0
    after_first = store_keys(s.repo)

    second = run(s.repo)  # the original is still there: its repaired twin is found
    assert store_keys(s.repo) == after_first and second.trees_written == 0
    assert {(r.snapshot_id, r.status, r.new_id) for r in second.snapshots} == {
        (snapshot.id, "already_repaired", entry.new_id),
        (entry.new_id, "unchanged", None),
    }

    third = run(s.repo, forget=True)  # forgets the original, repairs nothing again
    assert {x.id for x in s.repo.list_snapshots()} == {entry.new_id}
    assert third.trees_written == 0
    assert [r.status for r in run(s.repo).snapshots] == ["unchanged"]
    assert_check_passes(s.repo)


def test_read_data_finds_a_corrupt_blob(tmp_path: Path) -> None:
    s = make_setup(tmp_path)
    snapshot = backup(s.repo, s.data).snapshot
    victim = s.data / "sub" / "c.bin"
    node = find_node(s.repo, snapshot, str(victim))
    assert node is not None
    loc = s.repo.locate(node.content[0])
    path = tmp_path / "repo" / pack_key(loc.pack)
    raw = bytearray(path.read_bytes())
    raw[loc.offset + loc.length // 2] ^= 0x01
    path.write_bytes(bytes(raw))

    assert [r.status for r in run(s.repo).snapshots] == ["unchanged"]  # sizes are intact
    result = run(s.repo, read_data=True, forget=True)
    (entry,) = result.snapshots
    assert entry.status == "repaired"
    assert [c.path for c in entry.changes] == [str(victim)]


def test_lost_tree_in_a_stale_index_asks_for_repair_index(tmp_path: Path) -> None:
    """Without repair index, the empty tree a lost directory needs may be indexed in the
    very pack that is lost; storing it again is impossible, so the run stops first."""
    s = make_setup(tmp_path)
    (s.data / "empty").mkdir()
    _, _, pack = two_backups_sharing_a_subtree(s)
    empty_tree = s.repo.key.blob_id(encode_docs([])).hex()
    assert s.repo.locate(bytes.fromhex(empty_tree)).pack == pack
    s.repo.store.delete(pack_key(pack))
    before = store_keys(s.repo)
    with pytest.raises(IndexNeedsRepair, match=f"{empty_tree}.*repair index"):
        run(s.repo)
    assert {k for k in store_keys(s.repo) if not k.startswith("data/")} == {
        k for k in before if not k.startswith("data/")
    }
    rebuild_index(s.repo)
    result = run(s.repo, forget=True)
    assert [r.status for r in result.snapshots] == ["unrepairable", "repaired"]
    assert_check_passes(s.repo)


def test_unreadable_snapshot_document_is_forgotten_only_when_named(tmp_path: Path) -> None:
    s = make_setup(tmp_path)
    snapshot = backup(s.repo, s.data).snapshot
    broken = tmp_path / "repo" / "snapshots" / snapshot.id
    broken.write_bytes(broken.read_bytes()[:-1])

    chosen, unreadable = select_snapshots(s.repo, [])
    assert chosen == [] and unreadable == [snapshot.id]
    result = repair_snapshots(s.repo, chosen, unreadable, forget=True)
    assert not result.ok and [r.status for r in result.snapshots] == ["unreadable"]
    assert "name it with --forget" in result.snapshots[0].reason
    assert broken.exists() and not result.snapshots[0].forgotten

    chosen, unreadable = select_snapshots(s.repo, [snapshot.id[:8]])
    assert unreadable == [snapshot.id]
    result = repair_snapshots(s.repo, chosen, unreadable, forget=True, forget_unreadable=True)
    assert result.snapshots[0].forgotten and not broken.exists()


def test_a_file_keeps_the_blobs_that_remain(tmp_path: Path) -> None:
    """restic's rule for a file of several blobs: the lost ones are cut out, in order."""
    s = make_setup(tmp_path)
    big = s.data / "big.bin"
    write(big, random.Random(2).randbytes(3 << 20))
    snapshot = backup(s.repo, s.data).snapshot
    node = find_node(s.repo, snapshot, str(big))
    assert node is not None and len(node.content) >= 3
    lost = node.content[1]
    s.repo.store.delete(pack_key(s.repo.locate(lost).pack))
    rebuild_index(s.repo)
    kept = [s.repo.load_blob(c) for c in node.content if c != lost]

    (entry,) = run(s.repo, forget=True).snapshots
    n = len(node.content)
    assert [c.detail for c in entry.changes] == [
        f"1 of {n} blobs lost; {sum(map(len, kept))} of {3 << 20} bytes kept"
    ]
    assert_check_passes(s.repo)
    (repaired,) = s.repo.list_snapshots()
    files = restored_files(s.repo, repaired, tmp_path / "restore")
    assert files[inside(tmp_path / "restore", big)] == b"".join(kept)


def test_unusable_entries_are_dropped(memory_repo: Repository) -> None:
    blob = save_data(memory_repo, b"one\n")
    entry = node_doc(Node(name=b"f", type="file", mode=0o644, size=4, content=[blob]))
    root = save_raw_tree(memory_repo, [entry, entry, {"name": "bad", "type": "nonsense"}])
    original = Snapshot(time=now(), tree=root, paths=["/f"], hostname="h")
    memory_repo.save_snapshot(original)
    assert not check(memory_repo).ok

    (result,) = run(memory_repo, forget=True).snapshots
    assert result.status == "repaired"
    assert sorted((c.path, c.kind) for c in result.changes) == [("/bad", "entry"), ("/f", "entry")]
    assert_check_passes(memory_repo)
    (repaired,) = memory_repo.list_snapshots()
    assert [n.name for n in decode_tree(memory_repo.load_tree_document(repaired.tree), "")] == [
        b"f"
    ]
