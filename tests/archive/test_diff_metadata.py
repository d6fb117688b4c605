"""``diff --metadata``: entries whose content, mode and owner stayed but whose mtime did not."""

from __future__ import annotations

import os
from pathlib import Path

from safehold.archive.browse import diff_trees
from safehold.repo.repository import Repository
from tests.archive.helpers import backup, write


def test_metadata_changes_are_u_only_when_asked(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "touched", b"same bytes")
    write(src / "edited", b"old")
    write(src / "dir" / "keep", b"k")
    before = backup(local_repo, src).snapshot
    os.utime(src / "touched", ns=(1, 1))
    os.utime(src / "dir", ns=(2, 2))
    write(src / "edited", b"new")
    after = backup(local_repo, src).snapshot

    def changes(metadata: bool) -> set[tuple[str, str]]:
        prefix = os.fsencode(src) + b"/"
        return {
            (kind, os.fsdecode(path.removeprefix(prefix)))
            for kind, path, _ in diff_trees(local_repo, before.tree, after.tree, metadata=metadata)
            if path.startswith(prefix)
        }

    assert changes(False) == {("M", "edited")}
    assert changes(True) == {("M", "edited"), ("U", "touched"), ("U", "dir")}
