"""prune on real repositories: what it frees, what it keeps, and its refusals."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument, LockLost, SafeholdError
from safehold.ops.check import DataSubset, check
from safehold.ops.prune import parse_max_unused, plan_prune, prune
from safehold.repo.repository import Repository, pack_key
from safehold.repo.snapshot import Snapshot
from safehold.storage import LocalStore
from tests.archive.helpers import assert_same_tree, backup, restore, write
from tests.conftest import CHEAP_KDF, PASSWORD

SMALL_PACKS = 256 * 1024


def _nothing() -> None:
    return None


def _repo(tmp_path: Path) -> Repository:
    return Repository.init(
        LocalStore(tmp_path / "repo"), PASSWORD, CHEAP_KDF, pack_size=SMALL_PACKS
    )


def _reopen(repo: Repository) -> Repository:
    fresh = Repository.open(repo.store, PASSWORD)
    fresh.load_index()
    return fresh


def _store_bytes(repo: Repository, prefix: str = "data/") -> int:
    return sum(info.size for info in repo.store.list(prefix))


def _assert_restores(repo: Repository, snapshot: Snapshot, source: Path, tmp_path: Path) -> None:
    target = tmp_path / f"restore-{snapshot.short_id}"
    restore(_reopen(repo), snapshot.tree, target)
    assert_same_tree(source, target / source.relative_to("/"))


def test_prune_frees_forgotten_data_and_keeps_the_rest(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    rng = random.Random(1)
    data = tmp_path / "data"
    for i in range(6):
        write(data / f"keep{i}.bin", rng.randbytes(120_000))
    first = backup(repo, data).snapshot
    for i in range(6):
        write(data / f"gone{i}.bin", rng.randbytes(120_000))
    second = backup(repo, data).snapshot
    before = _store_bytes(repo)
    repo.delete_snapshot(second.id)

    plan = plan_prune(repo)
    assert plan.delete and plan.freed_bytes > 600_000
    result = prune(repo, plan, _nothing)
    assert not result.undeletable
    assert _store_bytes(repo) < before - 600_000
    assert check(_reopen(repo)).ok
    target = tmp_path / "restored"
    restore(_reopen(repo), first.tree, target)
    for i in range(6):
        assert (target / data.relative_to("/") / f"keep{i}.bin").read_bytes() == (
            data / f"keep{i}.bin"
        ).read_bytes()
    assert not (target / data.relative_to("/") / "gone0.bin").exists()
    assert plan_prune(_reopen(repo)).nothing_to_do  # a second prune has nothing left


def test_partly_used_pack_is_repacked_above_max_unused(tmp_path: Path) -> None:
    repo = Repository.init(LocalStore(tmp_path / "repo"), PASSWORD, CHEAP_KDF, pack_size=8 << 20)
    rng = random.Random(2)
    data = tmp_path / "data"
    write(data / "stays.bin", rng.randbytes(600_000))
    write(data / "goes.bin", rng.randbytes(600_000))
    backup(repo, data)
    (data / "goes.bin").unlink()
    kept = backup(repo, data).snapshot
    for snapshot in repo.list_snapshots():
        if snapshot.id != kept.id:
            repo.delete_snapshot(snapshot.id)

    assert not plan_prune(repo, max_unused=1.0).repack  # tolerate everything: no repack
    plan = plan_prune(repo, max_unused=0.10)
    assert len(plan.repack) == 1 and plan.repack_bytes >= 600_000
    prune(repo, plan, _nothing)
    assert plan_prune(_reopen(repo), max_unused=0.10).nothing_to_do
    assert check(_reopen(repo), read_data=DataSubset()).ok
    _assert_restores(repo, kept, data, tmp_path)


def test_unindexed_packs_of_a_killed_backup_are_deleted(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    data = tmp_path / "data"
    write(data / "f.bin", random.Random(3).randbytes(300_000))
    snapshot = backup(repo, data).snapshot
    stray = "ab" + "0" * 62
    repo.store.put(pack_key(stray), b"left by a killed backup")
    plan = plan_prune(repo)
    assert plan.unindexed_packs == 1 and stray in plan.delete
    prune(repo, plan, _nothing)
    assert stray not in {i.key.rsplit("/", 1)[-1] for i in repo.store.list("data/")}
    result = check(_reopen(repo))
    assert result.ok and not result.warnings
    _assert_restores(repo, snapshot, data, tmp_path)


def test_prune_refuses_when_needed_data_is_missing(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    data = tmp_path / "data"
    write(data / "f.bin", random.Random(4).randbytes(300_000))
    backup(repo, data)
    victim = sorted(i.key for i in repo.store.list("data/"))[0]
    repo.store.delete(victim)
    before = sorted(i.key for i in repo.store.list(""))
    with pytest.raises(SafeholdError, match="cannot prune"):
        plan_prune(repo)
    assert sorted(i.key for i in repo.store.list("")) == before


def test_prune_refuses_with_a_damaged_snapshot(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    data = tmp_path / "data"
    write(data / "f.bin", b"x" * 1000)
    snapshot = backup(repo, data).snapshot
    repo.store.put(f"snapshots/{snapshot.id}", b"garbage")  # LocalStore.put overwrites
    with pytest.raises(SafeholdError, match="damaged snapshot"):
        plan_prune(repo)


def test_lost_lock_stops_before_deleting(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    data = tmp_path / "data"
    write(data / "f.bin", random.Random(5).randbytes(300_000))
    backup(repo, data)
    for snapshot in repo.list_snapshots():
        repo.delete_snapshot(snapshot.id)
    packs_before = sorted(i.key for i in repo.store.list("data/"))
    index_before = sorted(i.key for i in repo.store.list("index/"))

    def lapsed() -> None:
        raise LockLost("test")

    with pytest.raises(LockLost):
        prune(repo, plan_prune(repo), lapsed)
    assert sorted(i.key for i in repo.store.list("data/")) == packs_before
    assert sorted(i.key for i in repo.store.list("index/")) == index_before


@pytest.mark.parametrize(
    ("text", "share"), [("10%", 0.1), ("0", 0.0), ("100%", 1.0), ("0.25", 0.25)]
)
def test_parse_max_unused(text: str, share: float) -> None:
    assert parse_max_unused(text) == share


@pytest.mark.parametrize("text", ["", "x", "101%", "-1%", "2"])
def test_parse_max_unused_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_max_unused(text)
