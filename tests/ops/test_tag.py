"""``tag``: new snapshot documents with the tags changed, written before the old go."""

from __future__ import annotations

from pathlib import Path

import pytest

from safehold.archive.snapshotter import BackupRequest, run_backup
from safehold.errors import InvalidArgument
from safehold.ops.tag import TagEdit, retag
from safehold.repo.repository import Repository
from tests.archive.helpers import backup, write


def test_add_remove_set_and_original(local_repo: Repository, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"x")
    request = BackupRequest(paths=[str(tmp_path / "src")], tags=["nightly", "old"])
    first = run_backup(local_repo, request).snapshot

    (change,) = retag(local_repo, [first], TagEdit(add=["keep"], remove=["old"]))
    assert change.new_id is not None and change.tags == ["keep", "nightly"]
    (now,) = local_repo.list_snapshots()
    assert now.id == change.new_id and now.tags == ["keep", "nightly"]
    assert now.original == first.id and now.tree == first.tree and now.time == first.time

    (again,) = retag(local_repo, [now], TagEdit(set=[]))
    (last,) = local_repo.list_snapshots()
    assert last.tags == [] and last.original == first.id, "original names the first of the line"
    # asking for what is already there writes nothing
    (same,) = retag(local_repo, [last], TagEdit(remove=["absent"]))
    assert same.new_id is None and [s.id for s in local_repo.list_snapshots()] == [last.id]
    assert again.new_id == last.id


def test_new_document_is_written_before_the_old_is_deleted(
    local_repo: Repository, tmp_path: Path
) -> None:
    write(tmp_path / "src" / "f", b"x")
    first = backup(local_repo, tmp_path / "src").snapshot
    seen: list[set[str]] = []
    delete = local_repo.delete_snapshot

    def watching(snapshot_id: str) -> None:
        seen.append({s.id for s in local_repo.list_snapshots()})
        delete(snapshot_id)

    local_repo.delete_snapshot = watching  # type: ignore[method-assign]
    (change,) = retag(local_repo, [first], TagEdit(add=["x"]))
    assert seen == [{first.id, change.new_id}]


def test_edits_that_make_no_sense_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="--set cannot be combined"):
        TagEdit(add=["a"], set=["b"])
    with pytest.raises(InvalidArgument, match="nothing to do"):
        TagEdit()
