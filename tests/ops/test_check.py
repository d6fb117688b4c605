"""check on real repositories: clean, damaged packs, missing packs, stray packs, subsets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from safehold.archive.browse import find_node
from safehold.errors import InvalidArgument
from safehold.ops.check import DataSubset, Problem, check, parse_subset
from safehold.repo.repository import Repository, pack_key
from safehold.repo.snapshot import Snapshot
from safehold.storage import LocalStore
from tests.archive.helpers import backup, write
from tests.conftest import CHEAP_KDF, PASSWORD

SMALL_PACKS = 64 * 1024  # about one 100 KB file per pack, so damage stays local


@dataclass
class Backed:
    repo: Repository
    root: Path  # the repository's directory
    data: Path
    snapshot: Snapshot


def make_backed(tmp_path: Path) -> Backed:
    """A repository on disk with one snapshot of a few files spread over several packs."""
    root = tmp_path / "repo"
    repo = Repository.init(LocalStore(root), PASSWORD, CHEAP_KDF, pack_size=SMALL_PACKS)
    data = tmp_path / "data"
    rng = random.Random(7)
    for name in ("a.bin", "b.bin", "sub/c.bin", "sub/deep/d.bin"):
        write(data / name, rng.randbytes(100_000))
    write(data / "small.txt", b"hello\n")
    snapshot = backup(repo, data).snapshot
    return Backed(repo, root, data, snapshot)


@pytest.fixture
def backed(tmp_path: Path) -> Backed:
    return make_backed(tmp_path)


def pack_of(b: Backed, path: Path) -> tuple[str, bytes]:
    """The pack holding the first blob of a backed-up file, and that blob's id."""
    node = find_node(b.repo, b.snapshot, str(path))
    assert node is not None and node.content
    return b.repo.locate(node.content[0]).pack, node.content[0]


def flip_blob_byte(b: Backed, blob_id: bytes) -> str:
    """Damage one blob in place (the pack keeps its size); returns its pack."""
    loc = b.repo.locate(blob_id)
    path = b.root / pack_key(loc.pack)
    raw = bytearray(path.read_bytes())
    raw[loc.offset + loc.length // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    return loc.pack


def indexed_packs(repo: Repository) -> set[str]:
    return repo.index.packs()


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_clean_repository_passes(backed: Backed) -> None:
    result = check(backed.repo)
    assert result.ok and not result.warnings, result
    assert result.snapshots == 1
    assert result.trees == len(backed.data.parts) + 2  # "/", each directory down to data, 2 below
    assert result.packs == len(indexed_packs(backed.repo)) > 2
    assert result.packs_read == []
    full = check(backed.repo, DataSubset())
    assert full.ok and not full.warnings, full
    assert sorted(full.packs_read) == sorted(indexed_packs(backed.repo))
    assert full.blobs_read == len(backed.repo.index)


def test_flipped_byte_found_only_by_read_data(backed: Backed) -> None:
    victim = backed.data / "sub" / "c.bin"
    pack, blob_id = pack_of(backed, victim)
    flip_blob_byte(backed, blob_id)

    assert check(backed.repo).ok  # sizes still match: only reading finds it
    result = check(backed.repo, DataSubset())
    assert not result.ok
    blob_problem = only([p for p in result.errors if blob_id.hex() in p.subject])
    assert pack_key(pack) in blob_problem.subject
    assert blob_problem.snapshots == (backed.snapshot.id,)
    assert blob_problem.paths == (str(victim),)
    whole = only([p for p in result.errors if p.subject == pack_key(pack)])
    assert "does not match its id" in whole.message


def test_deleted_pack_names_snapshot_and_file(backed: Backed) -> None:
    victim = backed.data / "b.bin"
    pack, _ = pack_of(backed, victim)
    (backed.root / pack_key(pack)).unlink()
    result = check(backed.repo)
    problem = only(result.errors)
    assert problem.subject == pack_key(pack)
    assert "missing" in problem.message
    assert problem.snapshots == (backed.snapshot.id,)
    assert problem.paths == (str(victim),)


def test_damaged_tree_names_the_directory(backed: Backed) -> None:
    sub = find_node(backed.repo, backed.snapshot, str(backed.data / "sub"))
    assert sub is not None and sub.subtree
    tree_blob = bytes.fromhex(sub.subtree)
    pack = flip_blob_byte(backed, tree_blob)
    result = check(backed.repo, DataSubset())
    problem = only([p for p in result.errors if tree_blob.hex() in p.subject])
    assert pack_key(pack) in problem.subject
    assert problem.paths == (str(backed.data / "sub"),)


def test_lost_tree_pack_costs_the_whole_snapshot(backed: Backed) -> None:
    pack = backed.repo.locate(bytes.fromhex(backed.snapshot.tree)).pack
    (backed.root / pack_key(pack)).unlink()
    problem = only(check(backed.repo).errors)
    assert problem.subject == pack_key(pack)
    assert problem.snapshots == (backed.snapshot.id,) and problem.paths == ("/",)


def test_unindexed_pack_is_only_a_warning(backed: Backed) -> None:
    pack, _ = pack_of(backed, backed.data / "a.bin")
    stray = "ff" * 32
    backed.repo.store.put(pack_key(stray), backed.repo.store.get(pack_key(pack)))
    result = check(backed.repo)
    assert result.ok
    warning = only(result.warnings)
    assert warning.subject == pack_key(stray) and "unreferenced pack" in warning.message
    assert stray not in check(backed.repo, DataSubset()).packs_read


def test_buckets_cover_every_pack_once(backed: Backed) -> None:
    first = check(backed.repo, parse_subset("1/2")).packs_read
    second = check(backed.repo, parse_subset("2/2")).packs_read
    assert sorted(first + second) == sorted(indexed_packs(backed.repo))
    assert all(int(p[:2], 16) % 2 == 0 for p in first)
    assert all(int(p[:2], 16) % 2 == 1 for p in second)
    week = [p for n in range(1, 8) for p in check(backed.repo, parse_subset(f"{n}/7")).packs_read]
    assert sorted(week) == sorted(indexed_packs(backed.repo))


def test_percent_subsets(backed: Backed) -> None:
    packs = indexed_packs(backed.repo)
    assert sorted(check(backed.repo, parse_subset("100%")).packs_read) == sorted(packs)
    some = check(backed.repo, parse_subset("10%")).packs_read
    assert len(some) == -(-len(packs) // 10) and set(some) <= packs  # rounded up: never 0


@pytest.mark.parametrize("spec", ["0%", "101%", "x%", "0/3", "4/3", "1/0", "1/2/3", "", "half"])
def test_bad_subset_spec(spec: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid read-data subset"):
        parse_subset(spec)


def test_damaged_index_document_is_reported(backed: Backed) -> None:
    (index_file,) = (backed.root / "index").iterdir()
    index_file.write_bytes(index_file.read_bytes()[:-1])
    result = check(backed.repo)
    assert any(p.subject == f"index/{index_file.name}" for p in result.errors)
    assert any("unreferenced pack" in p.message for p in result.warnings)
