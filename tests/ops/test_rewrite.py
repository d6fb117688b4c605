"""``rewrite --exclude``: entries cut out of snapshots, new trees indexed before the new
snapshot, originals forgotten only after, repeated runs writing nothing new."""

from __future__ import annotations

import os
from pathlib import Path

from safehold.archive.browse import walk
from safehold.archive.excludes import Excluder
from safehold.ops.rewrite import REWRITE_TAG, rewrite_snapshots
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from tests.archive.helpers import backup, write
from tests.conftest import PASSWORD
from tests.ops.test_repair_snapshots import assert_check_passes, restored_files, store_keys


def names(repo: Repository, snapshot: Snapshot, root: Path) -> set[str]:
    prefix = os.fsencode(root) + b"/"
    return {
        os.fsdecode(p.removeprefix(prefix))
        for p, _ in walk(repo, snapshot.tree, b"")
        if p.startswith(prefix)
    }


def leaky(tmp_path: Path, repo: Repository) -> tuple[Path, Snapshot, Snapshot]:
    src = tmp_path / "src"
    write(src / "app" / "config.yml", b"ok")
    write(src / "app" / ".env", b"PASSWORD=hunter2")
    write(src / "keys" / "id_rsa", b"PRIVATE")
    write(src / "other" / "big.bin", os.urandom(100_000))
    first = backup(repo, src).snapshot
    write(src / "app" / "new.txt", b"n")
    return src, first, backup(repo, src).snapshot


def test_cut_out_written_in_order_and_forgotten(local_repo: Repository, tmp_path: Path) -> None:
    src, first, second = leaky(tmp_path, local_repo)
    order: list[str] = []
    save = local_repo.save_snapshot

    def checked_save(snapshot: Snapshot) -> str:
        # instrumentation: at this moment the new trees must already be stored and indexed
        fresh = Repository.open(local_repo.store, PASSWORD)
        fresh.load_index()
        assert bytes.fromhex(snapshot.tree) in fresh.index
        order.append("save")
        return save(snapshot)

    delete = local_repo.delete_snapshot

    def logged_delete(snapshot_id: str) -> None:
        order.append("delete")
        delete(snapshot_id)

    local_repo.save_snapshot = checked_save  # type: ignore[method-assign]
    local_repo.delete_snapshot = logged_delete  # type: ignore[method-assign]
    result = rewrite_snapshots(
        local_repo, [first, second], Excluder([".env", "/" + str(src / "keys")[1:]]), forget=True
    )
    assert order == ["save", "delete", "save", "delete"]
    assert [r.status for r in result.snapshots] == ["rewritten", "rewritten"]
    assert result.snapshots[0].removed == [str(src / "app" / ".env"), str(src / "keys")]

    after = {s.original: s for s in local_repo.list_snapshots()}
    assert set(after) == {first.id, second.id}, "the originals are gone, their rewrites named"
    new = after[second.id]
    assert REWRITE_TAG in new.tags and new.time == second.time and new.paths == second.paths
    assert names(local_repo, new, src) == {
        "app",
        "app/config.yml",
        "app/new.txt",
        "other",
        "other/big.bin",
    }
    # an untouched subtree keeps its id
    old_other = next(n for p, n in walk(local_repo, second.tree, b"") if p.endswith(b"/other"))
    new_other = next(n for p, n in walk(local_repo, new.tree, b"") if p.endswith(b"/other"))
    assert old_other.subtree == new_other.subtree
    files = restored_files(local_repo, new, tmp_path / "r")
    assert not any(b"hunter2" in data or b"PRIVATE" in data for data in files.values())
    assert_check_passes(local_repo)


def test_dry_run_and_repeated_runs_write_nothing(local_repo: Repository, tmp_path: Path) -> None:
    src, first, _ = leaky(tmp_path, local_repo)
    excluder = Excluder([], ignore_case=["ID_RSA"])
    before = store_keys(local_repo)
    dry = rewrite_snapshots(local_repo, [first], excluder, dry_run=True, forget=True)
    assert store_keys(local_repo) == before
    assert dry.snapshots[0].status == "rewritten" and dry.snapshots[0].new_id is None
    assert dry.trees_written == len(src.parts) + 1  # each level from "/" down to keys/

    once = rewrite_snapshots(local_repo, [first], excluder)  # interrupted before --forget
    keys = store_keys(local_repo)
    again = rewrite_snapshots(local_repo, [first], excluder, forget=True)
    (entry,) = again.snapshots
    assert entry.status == "already_rewritten" and entry.new_id == once.snapshots[0].new_id
    assert entry.forgotten and again.trees_written == 0
    assert store_keys(local_repo) == keys - {f"snapshots/{first.id}"}
    assert_check_passes(local_repo)
