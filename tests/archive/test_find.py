"""``find``: name and path patterns across snapshots, each directory searched once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safehold.archive.excludes import Excluder
from safehold.archive.find import Finder
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from tests.archive.helpers import backup, write


def found(finder: Finder, snapshot: Snapshot, root: Path) -> list[str]:
    prefix = os.fsencode(root) + b"/"
    return [os.fsdecode(p.removeprefix(prefix)) for p, _ in finder.find(snapshot)]


def test_names_paths_and_case(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "app.conf", b"a")
    write(src / "etc" / "db.conf", b"b")
    write(src / "etc" / "Secret.KEY", b"c")
    write(src / "conf" / "x.txt", b"d")
    snapshot = backup(local_repo, src).snapshot

    assert found(Finder(local_repo, Excluder(["*.conf"])), snapshot, src) == [
        "app.conf",
        "etc/db.conf",
    ]
    assert found(Finder(local_repo, Excluder(["etc/*"])), snapshot, src) == [
        "etc/Secret.KEY",
        "etc/db.conf",
    ]
    assert found(Finder(local_repo, Excluder(["*.key"])), snapshot, src) == []
    insensitive = Finder(local_repo, Excluder([], ignore_case=["*.key"]))
    assert found(insensitive, snapshot, src) == ["etc/Secret.KEY"]
    # a directory matches too; what is below it is listed only where it matches itself
    assert found(Finder(local_repo, Excluder(["conf"])), snapshot, src) == ["conf"]


def test_a_shared_directory_is_searched_once(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "big" / "a.log", b"a")
    first = backup(local_repo, src).snapshot
    write(src / "new.log", b"b")
    second = backup(local_repo, src).snapshot
    loads: list[str] = []
    original = local_repo.load_tree_document

    def counting(tree_id: str) -> dict[str, object]:
        loads.append(tree_id)
        return original(tree_id)

    # instrumentation, not a fault: the only way to see how often a tree is read
    local_repo.load_tree_document = counting  # type: ignore[method-assign]
    finder = Finder(local_repo, Excluder(["*.log"]))
    assert found(finder, first, src) == ["big/a.log"]
    assert found(finder, second, src) == ["big/a.log", "new.log"]
    assert len(loads) == len(set(loads)), "a tree was read twice"


@pytest.mark.parametrize("pattern", ["", "[z-a]", "dir/[9-0]"])
def test_bad_patterns_are_one_clear_error(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid pattern"):
        Excluder([pattern])
