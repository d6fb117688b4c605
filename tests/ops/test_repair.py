"""repair index: a repository whose index is lost is whole again from its pack headers."""

from __future__ import annotations

import random
from pathlib import Path

from safehold.ops.check import check
from safehold.ops.repair import rebuild_index
from safehold.repo.repository import Repository, pack_key
from safehold.storage import LocalStore
from tests.archive.helpers import backup, inside, restore, write
from tests.conftest import CHEAP_KDF, PASSWORD


def test_rebuilt_index_restores_every_snapshot(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    repo = Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=64 * 1024)
    data = tmp_path / "data"
    rng = random.Random(3)
    expected: list[tuple[str, dict[Path, bytes]]] = []
    for round_ in range(2):
        for name in ("a.bin", "sub/b.bin", f"new{round_}.bin"):
            write(data / name, rng.randbytes(90_000))
        contents = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
        expected.append((backup(repo, data).snapshot.tree, contents))

    for index_file in (tmp_path / "repo" / "index").iterdir():
        index_file.unlink()
    lost = check(Repository.open(store, PASSWORD))
    assert not lost.ok and lost.warnings  # every pack is now unreferenced

    result = rebuild_index(Repository.open(store, PASSWORD))
    assert result.unreadable == [] and result.new_index is not None
    assert [info.key for info in store.list("index/")] == [f"index/{result.new_index}"]
    assert result.packs == len(list(store.list("data/")))

    reopened = Repository.open(store, PASSWORD)
    after = check(reopened)
    assert after.ok and not after.warnings, after
    reopened.load_index()
    for i, (tree, contents) in enumerate(expected):
        target = tmp_path / f"restore{i}"
        stats = restore(reopened, tree, target)
        assert not stats.errors
        for path, content in contents.items():
            assert inside(target, path).read_bytes() == content


def test_unreadable_pack_is_left_out(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    repo = Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=64 * 1024)
    write(tmp_path / "data" / "f.bin", random.Random(1).randbytes(50_000))
    backup(repo, tmp_path / "data")
    old = {info.key for info in store.list("index/")}
    broken = "ee" * 32
    store.put(pack_key(broken), b"not a pack")
    result = rebuild_index(repo)
    assert [pack for pack, _ in result.unreadable] == [pack_key(broken)]
    assert broken not in repo.index.packs() and len(repo.index) > 0
    assert sorted(result.removed) == sorted(k.removeprefix("index/") for k in old)
