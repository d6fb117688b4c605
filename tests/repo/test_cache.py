"""The local cache of index and snapshot documents: used, verified, and kept in step."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from safehold.ops.prune import plan_prune, prune
from safehold.repo.cache import DocumentCache
from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from safehold.storage.base import ObjectStore
from tests.archive.helpers import backup, write
from tests.conftest import CHEAP_KDF, CLI, PASSWORD
from tests.servers import S3Server


class CountingStore:
    """A real store that counts the GETs made through it, per key prefix."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.gets: Counter[str] = Counter()

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        self.gets[key.split("/", 1)[0]] += 1
        return self.inner.get(key, byte_range)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _open(store: Any, cache: Path) -> Repository:
    repo = Repository.open(store, PASSWORD)
    repo.cache = DocumentCache.for_repository(repo.config.id, cache)
    return repo


def _populated(tmp_path: Path) -> tuple[CountingStore, Path]:
    store = LocalStore(tmp_path / "repo")
    repo = Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=64 * 1024)
    rng = random.Random(3)
    for i in range(3):
        write(tmp_path / "data" / f"f{i}", rng.randbytes(100_000))
        backup(repo, tmp_path / "data")
    return CountingStore(store), tmp_path / "cache"


def test_second_open_reads_documents_from_the_cache(tmp_path: Path) -> None:
    store, cache = _populated(tmp_path)
    first = _open(store, cache)
    first.load_index()
    assert len(first.list_snapshots()) == 3
    assert store.gets["index"] == 3 and store.gets["snapshots"] == 3
    store.gets.clear()
    second = _open(store, cache)
    second.load_index()
    assert len(second.list_snapshots()) == 3
    assert store.gets["index"] == 0 and store.gets["snapshots"] == 0
    assert dict(second.index.items()) == dict(first.index.items())
    assert (cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172")


def test_damaged_cache_entry_is_fetched_again(tmp_path: Path) -> None:
    store, cache = _populated(tmp_path)
    repo = _open(store, cache)
    snapshots = repo.list_snapshots()
    entry = cache / repo.config.id / "snapshots" / snapshots[0].id
    entry.write_bytes(entry.read_bytes()[:-1] + b"\0")
    store.gets.clear()
    assert [s.id for s in _open(store, cache).list_snapshots()] == [s.id for s in snapshots]
    assert store.gets["snapshots"] == 1  # only the damaged one came from the store


def test_cache_follows_deletions_and_new_writes(tmp_path: Path) -> None:
    store, cache = _populated(tmp_path)
    repo = _open(store, cache)
    repo.load_index()
    oldest = repo.list_snapshots()[0]
    repo.delete_snapshot(oldest.id)
    prune(repo, plan_prune(repo, max_unused=0.0), lambda: None)
    fresh = _open(store, cache)
    fresh.load_index()
    assert oldest.id not in {s.id for s in fresh.list_snapshots()}
    on_store = {i.key.removeprefix("index/") for i in store.list("index/")}
    assert {p.name for p in (cache / repo.config.id / "index").iterdir()} == on_store
    store.gets.clear()
    _open(store, cache).load_index()  # prune's new index documents were cached as written
    assert store.gets["index"] == 0


def test_unusable_cache_directory_falls_back_to_the_store(tmp_path: Path) -> None:
    store, _ = _populated(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache would go")
    repo = _open(store, blocker)
    repo.load_index()
    assert len(repo.list_snapshots()) == 3


def test_cli_caches_an_s3_repository(seaweedfs: S3Server, cli: CLI, tmp_path: Path) -> None:
    location = seaweedfs.location("cache-cli")
    cache = tmp_path / "cache"
    cli.env.update(seaweedfs.env(), SAFEHOLD_REPOSITORY=location, SAFEHOLD_CACHE_DIR=str(cache))
    cli.init()
    write(tmp_path / "data" / "f", b"hello" * 1000)
    cli.run("backup", tmp_path / "data", "-q")
    snapshots = json.loads(cli.run("--json", "snapshots").stdout)
    (repo_cache,) = [p for p in cache.iterdir() if p.is_dir()]
    assert {p.name for p in (repo_cache / "snapshots").iterdir()} == {snapshots[0]["id"]}
    assert len(list((repo_cache / "index").iterdir())) == 1
    cli.run("forget", snapshots[0]["id"])
    cli.run("snapshots")
    assert list((repo_cache / "snapshots").iterdir()) == []
    cli.run("--no-cache", "check")
