"""``replicate --logs-only``: archived logs reach a replica without a full replication."""

from __future__ import annotations

from pathlib import Path

import pytest

from safehold.errors import ReplicaMismatch
from safehold.ops.replicate import replicate
from safehold.ops.replicate_logs import LogFollower
from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.ops.test_replicate import Recording, objects, source  # noqa: F401  (fixture)

WAL = "wal/7311/000000010000000000000002"
BINLOG = "binlog/db1/mariadb-bin.000007"


def archive(repo: Repository, key: str, body: bytes) -> None:
    repo.put_log_file(key, body)  # sealed as wal-push and binlog-archive store them


def test_only_new_logs_are_copied_and_only_log_prefixes_listed(
    source: Repository,  # noqa: F811
    tmp_path: Path,
) -> None:
    replica = LocalStore(tmp_path / "replica")
    replicate(source, replica)
    archive(source, WAL, b"segment" * 1000)
    archive(source, BINLOG, b"binlog" * 100)
    watched = Recording(source.store)
    follower = LogFollower(Repository(watched, source.key, source.config, source.key_id), replica)
    first = follower.poll()
    assert first.ok and first.copied == 2 and first.copied_by_group == {"wal": 1, "binlog": 1}
    assert objects(replica)[WAL] == objects(source.store)[WAL]
    assert objects(replica)[BINLOG] == objects(source.store)[BINLOG]

    watched.lists.clear()
    replica_store = Recording(replica)
    follower.target = replica_store
    assert follower.poll().copied == 0  # nothing new: nothing written
    assert replica_store.puts == [] and sorted(watched.lists) == ["binlog/", "wal/"]
    later = WAL[:-1] + "3"
    archive(source, later, b"next segment" * 1000)
    assert follower.poll().copied == 1 and replica_store.puts == [later]
    assert sorted(set(watched.lists)) == ["binlog/", "wal/"]  # never data/, index/...


def test_a_new_replica_gets_keys_and_config_first_and_opens(
    source: Repository,  # noqa: F811
    tmp_path: Path,
) -> None:
    archive(source, WAL, b"segment" * 1000)
    target = Recording(LocalStore(tmp_path / "new-replica"))
    result = LogFollower(source, target).poll()
    assert result.ok
    assert target.puts[-1] == WAL and "config" in target.puts
    assert target.puts.index("config") > max(
        i for i, k in enumerate(target.puts) if k.startswith("keys/")
    )
    opened = Repository.open(target.inner, PASSWORD)  # a repository, with the same password
    assert opened.get_log_file(WAL) == b"segment" * 1000
    assert not any(k.startswith(("data/", "snapshots/")) for k in objects(target.inner))


def test_refuses_another_repository_and_a_damaged_log(
    source: Repository,  # noqa: F811
    tmp_path: Path,
) -> None:
    other = LocalStore(tmp_path / "other")
    Repository.init(other, PASSWORD, CHEAP_KDF)
    with pytest.raises(ReplicaMismatch):
        LogFollower(source, other).poll()

    sealed = bytearray(source.key.seal(b"segment" * 100))
    sealed[20] ^= 1
    source.store.put(WAL, bytes(sealed))
    replica = LocalStore(tmp_path / "replica")
    result = LogFollower(source, replica).poll()
    assert [(e.key, e.corrupt) for e in result.errors] == [(WAL, True)]
    assert WAL not in objects(replica)
