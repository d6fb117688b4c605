"""Replication in-process: order, verification, resumption, --delete, status, refusals.

Real stores only (local directories, and the session's SeaweedFS for S3); the wrappers
below record or fail calls of a real store, as restic's and kopia's test stores do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument, ReplicaMismatch, StoreError
from safehold.ops.check import DataSubset, check
from safehold.ops.replicate import (
    COPY_ORDER,
    DELETE_ORDER,
    group_of,
    replicate,
)
from safehold.ops.replicate_status import replication_status
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time
from safehold.storage import LocalStore, ObjectInfo, ObjectStore, open_store
from tests.archive.helpers import assert_same_tree, backup, inside, restore, write
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.servers import S3Server

# ---- store wrappers -----------------------------------------------------------------


@dataclass
class Recording:
    """A real store whose writes, deletes and listed prefixes are recorded in order."""

    inner: ObjectStore
    puts: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    fail_put: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)  # a lying store: drops the last byte
    location: str = ""

    def __post_init__(self) -> None:
        self.location = self.inner.location

    def exists(self) -> bool:
        return self.inner.exists()

    def create(self) -> None:
        self.inner.create()

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        if key in self.fail_put:
            raise StoreError(f"injected failure writing {key}")
        self.inner.put(key, data[:-1] if key in self.truncate else data, if_absent=if_absent)
        self.puts.append(key)

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        return self.inner.get(key, byte_range)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self.lists.append(prefix)
        return self.inner.list(prefix)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self.deletes.append(key)


def groups_in_order(keys: list[str]) -> list[str]:
    """The sequence of prefixes as they were touched, runs collapsed."""
    seen: list[str] = []
    for key in keys:
        if not seen or seen[-1] != group_of(key):
            seen.append(group_of(key))
    return seen


# ---- fixtures -----------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Repository:
    """A repository with two snapshots of a small tree, in packs of 64 KiB."""
    repo = Repository.init(
        LocalStore(tmp_path / "primary"), PASSWORD, CHEAP_KDF, pack_size=64 << 10
    )
    data = tmp_path / "data"
    write(data / "a.bin", uuid.uuid4().bytes * 20_000)
    write(data / "sub" / "b.txt", b"hello\n")
    backup(repo, data, time=format_time(datetime(2026, 1, 1, tzinfo=UTC)))
    write(data / "c.bin", uuid.uuid4().bytes * 10_000)
    backup(repo, data, time=format_time(datetime(2026, 1, 1, 1, tzinfo=UTC)))
    return repo


def objects(store: ObjectStore) -> dict[str, bytes]:
    return {i.key: store.get(i.key) for i in store.list("") if not i.key.startswith("locks/")}


def assert_restores_alone(replica_store: ObjectStore, original: Path, tmp_path: Path) -> None:
    """Open the replica with the password alone, check it whole, restore byte-identical."""
    replica = Repository.open(replica_store, PASSWORD)
    result = check(replica, DataSubset())
    assert result.ok and not result.warnings, result.errors + result.warnings
    replica.load_index()
    newest = replica.list_snapshots()[-1]
    target = tmp_path / f"restored-{uuid.uuid4().hex[:6]}"
    restore(replica, newest.tree, target)
    assert_same_tree(original, inside(target, original))


# ---- copying ------------------------------------------------------------------------


def test_local_to_local_is_a_complete_repository(source: Repository, tmp_path: Path) -> None:
    target = LocalStore(tmp_path / "replica" / "nested")
    result = replicate(source, target, connections=4)
    assert result.ok and result.created_target
    assert objects(target) == objects(source.store)
    assert result.copied == len(objects(source.store))
    assert result.copied_bytes == sum(map(len, objects(source.store).values()))

    again = replicate(source, target)  # resumable: only what is missing
    assert again.copied == 0 and not again.created_target
    assert sum(s.skipped for s in again.prefixes.values()) == result.copied

    # the primary is gone: the replica alone restores everything
    for info in list(source.store.list("")):
        source.store.delete(info.key)
    assert_restores_alone(target, tmp_path / "data", tmp_path)


def test_copy_order_is_the_safety_order(source: Repository, tmp_path: Path) -> None:
    wal = "wal/7311/000000010000000000000001"
    source.store.put(wal, source.key.seal(b"\0" + b"w" * 1000))  # sealed, as the archiver does
    write(Path(source.store.location) / "locks" / ("ab" * 32), b"a lock")
    target = Recording(LocalStore(tmp_path / "replica"))
    result = replicate(source, target, connections=8)
    assert result.ok
    assert groups_in_order(target.puts) == ["keys", "config", "data", "wal", "index", "snapshots"]
    assert not any(k.startswith("locks/") for k in target.puts)
    assert result.prefixes["wal"].copied == 1
    assert target.get(wal) == source.store.get(wal)
    assert list(COPY_ORDER).index("data") < list(COPY_ORDER).index("index")


def test_corrupt_source_pack_is_reported_and_never_copied(
    source: Repository, tmp_path: Path
) -> None:
    root = Path(source.store.location)
    victim = max((root / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    raw = bytearray(victim.read_bytes())
    raw[10] ^= 0xFF
    victim.write_bytes(bytes(raw))
    key = victim.relative_to(root).as_posix()
    target = LocalStore(tmp_path / "replica")

    result = replicate(source, target)
    assert not result.ok
    assert [(e.key, e.corrupt) for e in result.errors] == [(key, True)]
    assert "does not match its name" in result.errors[0].message
    with pytest.raises(StoreError):
        target.stat(key)
    # everything else is there: the replica is as good as the damaged primary
    assert set(objects(target)) == set(objects(source.store)) - {key}
    assert result.prefixes["snapshots"].copied == 2

    again = replicate(source, target)  # still refused, still named
    assert [e.key for e in again.errors] == [key] and again.copied == 0


def test_damaged_wal_object_is_refused(source: Repository, tmp_path: Path) -> None:
    sealed = bytearray(source.key.seal(b"\0" + b"segment" * 100))
    sealed[20] ^= 0x01
    source.store.put("wal/7311/000000010000000000000002", bytes(sealed))
    target = LocalStore(tmp_path / "replica")
    result = replicate(source, target)
    assert [(e.key, e.corrupt) for e in result.errors] == [
        ("wal/7311/000000010000000000000002", True)
    ]
    assert "authentication failed" in result.errors[0].message
    assert result.prefixes["snapshots"].copied == 2  # the rest is there
    assert not any(k.startswith("wal/") for k in objects(target))


def test_write_failure_holds_back_index_and_snapshots(source: Repository, tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "replica")
    pack = next(k for k in objects(source.store) if k.startswith("data/"))
    target = Recording(inner, fail_put={pack})

    result = replicate(source, target)
    assert [(e.key, e.corrupt) for e in result.errors] == [(pack, False)]
    assert not any(group_of(k) in ("index", "snapshots") for k in target.puts)
    assert result.prefixes["index"].held_back == 2
    assert result.prefixes["snapshots"].held_back == 2
    assert Repository.open(inner, PASSWORD).list_snapshots() == []  # shows nothing broken

    healed = replicate(source, inner)
    assert healed.ok and objects(inner) == objects(source.store)
    assert healed.prefixes["data"].copied == 1


@pytest.mark.parametrize("kind", ["keys", "data", "config"])
def test_a_short_write_on_the_replica_is_caught(
    kind: str, source: Repository, tmp_path: Path
) -> None:
    """Sizes are checked after writing: by HEAD (one key file), by one listing (many
    packs), by reading back (config); the phases after it are held back."""
    key = next(k for k in objects(source.store) if group_of(k) == kind)
    target = Recording(LocalStore(tmp_path / "replica"), truncate={key})
    result = replicate(source, target)
    assert [(e.key, e.corrupt) for e in result.errors] == [(key, False)]
    assert "bytes" in result.errors[0].message or "differs" in result.errors[0].message
    assert result.prefixes["snapshots"].held_back == 2
    assert result.prefixes[kind].failed == 1


def test_delete_only_when_asked_and_in_reverse_order(source: Repository, tmp_path: Path) -> None:
    target = Recording(LocalStore(tmp_path / "replica"))
    replicate(source, target)
    # the primary forgets its oldest snapshot and loses an index and a pack (as prune would)
    oldest = source.list_snapshots()[0]
    source.delete_snapshot(oldest.id)
    index_key = next(k for k in objects(source.store) if k.startswith("index/"))
    pack_key = next(k for k in objects(source.store) if k.startswith("data/"))
    source.store.delete(index_key)
    source.store.delete(pack_key)
    gone = {f"snapshots/{oldest.id}", index_key, pack_key}

    kept = replicate(source, target)
    assert kept.ok and kept.deleted == 0 and gone <= set(objects(target))
    status = replication_status(source, target)
    assert {k for d in status.extra.values() for k in d.names} == gone
    assert status.extra["snapshots"].count == 1 and not status.missing

    removed = replicate(source, target, delete=True)
    assert removed.ok and removed.deleted == 3
    assert objects(target) == objects(source.store)
    assert groups_in_order(target.deletes) == ["snapshots", "index", "data"]
    assert list(DELETE_ORDER)[:2] == ["snapshots", "index"]


def test_delete_skipped_when_the_copy_failed(source: Repository, tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "replica")
    replicate(source, inner)
    source.delete_snapshot(source.list_snapshots()[0].id)
    write(tmp_path / "data" / "new.bin", uuid.uuid4().bytes * 5000)
    backup(source, tmp_path / "data")
    new_pack = next(k for k in objects(source.store) if k not in objects(inner))
    result = replicate(source, Recording(inner, fail_put={new_pack}), delete=True)
    assert result.errors and result.deletions_skipped and result.deleted == 0


def test_status_reports_lag_and_missing(source: Repository, tmp_path: Path) -> None:
    target = LocalStore(tmp_path / "replica")
    empty = replication_status(source, target)
    assert not empty.target_exists and empty.replica_newest is None and empty.lag_seconds is None
    assert empty.missing["snapshots"].count == 2 and empty.missing["keys"].count == 1

    replicate(source, target)
    synced = replication_status(source, target)
    assert synced.in_sync and synced.lag_seconds == 0.0
    assert synced.primary_newest == synced.replica_newest

    later = datetime(2026, 1, 1, 3, 30, tzinfo=UTC)
    write(tmp_path / "data" / "d.bin", uuid.uuid4().bytes * 8000)
    snap = backup(source, tmp_path / "data", time=format_time(later)).snapshot
    now = later + timedelta(minutes=10)
    behind = replication_status(source, target, cap=1, now=now)
    # the replica cannot restore the new snapshot, taken 10 minutes before "now"
    assert behind.lag_seconds == 600
    assert behind.behind is not None and behind.behind.since == later
    assert f"snapshot {snap.short_id}" in behind.behind.reason
    assert "packs, index, snapshots" in behind.behind.reason
    assert behind.primary_newest is not None and behind.primary_newest.id == snap.id
    assert behind.missing["snapshots"].names == (f"snapshots/{snap.id}",)
    assert behind.missing["data"].count >= 1 and len(behind.missing["data"].names) == 1
    assert {"index", "snapshots"} <= set(behind.missing) and not behind.extra
    assert behind.missing_by_kind()["snapshots"] == 1 and behind.missing["data"].kind == "packs"


def test_a_replica_missing_a_pack_is_never_0s_behind(source: Repository, tmp_path: Path) -> None:
    """A pack lost on the replica makes the snapshots written after it unrestorable
    there, though the replica holds every snapshot: the lag counts from the oldest."""
    target = LocalStore(tmp_path / "replica")
    replicate(source, target)
    first, second = source.list_snapshots()
    written = {info.key: info.modified for info in source.store.list("")}
    first_written = written[f"snapshots/{first.id}"]
    assert first_written is not None  # a local store says when each object was written
    second_only = sorted(  # packs the second backup wrote (after the first snapshot)
        k for k, t in written.items() if k.startswith("data/") and t and t > first_written
    )
    assert second_only
    now = datetime(2026, 1, 1, 2, tzinfo=UTC)

    target.delete(second_only[0])  # the second snapshot's pack only
    st = replication_status(source, target, now=now)
    assert st.behind is not None and st.behind.since == second.datetime
    assert st.lag_seconds == (now - second.datetime).total_seconds() > 0
    assert st.missing_by_kind() == {"packs": 1} and "missing on the replica: packs" in (
        st.behind.reason
    )

    oldest = sorted(info.key for info in source.store.list("data/"))
    for key in oldest:
        if key not in second_only:
            target.delete(key)  # a pack the first snapshot may need
            break
    st = replication_status(source, target, now=now)
    assert st.behind is not None and st.behind.since == first.datetime
    assert st.lag_seconds == (now - first.datetime).total_seconds()


def test_refuses_another_repository(source: Repository, tmp_path: Path) -> None:
    other = Repository.init(LocalStore(tmp_path / "other"), PASSWORD, CHEAP_KDF)
    before = objects(other.store)
    with pytest.raises(ReplicaMismatch, match="config differs"):
        replicate(source, other.store)
    with pytest.raises(ReplicaMismatch):
        replication_status(source, other.store)
    assert objects(other.store) == before

    stray = LocalStore(tmp_path / "stray")
    stray.create()
    stray.put("notes.txt", b"someone else's")
    with pytest.raises(ReplicaMismatch, match="no config"):
        replicate(source, stray)
    with pytest.raises(InvalidArgument):
        replicate(source, source.store)


def test_local_to_s3_and_back(source: Repository, tmp_path: Path, seaweedfs: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex}"
    location = seaweedfs.location(bucket, "replica")
    from safehold.storage.s3 import S3Store

    target = S3Store(
        location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    result = replicate(source, target, connections=4)  # the bucket is created
    assert result.ok and result.created_target
    assert objects(target) == objects(source.store)
    assert replicate(source, target).copied == 0
    assert replication_status(source, target).in_sync
    assert_restores_alone(target, tmp_path / "data", tmp_path)
    assert open_store(location).location == location


def test_a_flaky_network_to_the_replica_still_gives_an_exact_copy(
    source: Repository, tmp_path: Path, seaweedfs: S3Server
) -> None:
    from safehold.storage.s3 import S3Store
    from tests.storage.faultproxy import FaultPlan, fault_proxy

    name = f"t-{uuid.uuid4().hex}"
    access, secret = seaweedfs.access_key, seaweedfs.secret_key
    direct = S3Store(
        seaweedfs.location(name, "replica"), access_key_id=access, secret_access_key=secret
    )
    direct.create()
    plan = FaultPlan(rates={"503": 0.06, "reset": 0.06, "lost-reply": 0.08}, seed=11)
    with fault_proxy(seaweedfs.endpoint, plan) as proxy:
        server = S3Server(proxy.endpoint, seaweedfs.access_key, seaweedfs.secret_key)
        flaky = S3Store(
            server.location(name, "replica") + "&retries=8",
            access_key_id=access,
            secret_access_key=secret,
        )
        result = replicate(source, flaky, connections=4)
    assert result.ok, result.errors
    assert plan.injected["lost-reply"] >= 1 and sum(plan.injected.values()) >= 4
    assert objects(direct) == objects(source.store)  # seen without the proxy
    assert_restores_alone(direct, tmp_path / "data", tmp_path)


@dataclass
class BackupDuringListing:
    """The primary's store; a backup runs while replicate lists the whole store."""

    inner: ObjectStore
    during_full_listing: list[object] = field(default_factory=list)
    location: str = ""

    def __post_init__(self) -> None:
        self.location = self.inner.location

    def exists(self) -> bool:
        return self.inner.exists()

    def create(self) -> None:
        self.inner.create()

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        return self.inner.get(key, byte_range)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for info in self.inner.list(prefix):
            if prefix == "" and info.key >= "index/" and self.during_full_listing:
                hook = self.during_full_listing.pop()  # data/ is listed, index/ is next
                assert callable(hook)
                hook()
            yield info

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def test_a_backup_during_replication_never_shows_a_snapshot_without_its_packs(
    source: Repository, tmp_path: Path
) -> None:
    """The backup writes its pack, index and snapshot after the full listing passed data/
    and before it reaches index/: one alphabetical listing would copy the new index and
    snapshot without their pack. Snapshots and indexes come from earlier listings."""
    data = tmp_path / "data"
    write(data / "during.bin", uuid.uuid4().bytes * 30_000)
    wrapped = BackupDuringListing(source.store)
    wrapped.during_full_listing.append(lambda: backup(source, data))
    primary = Repository(wrapped, source.key, source.config, source.key_id)
    target = LocalStore(tmp_path / "replica")

    result = replicate(primary, target)
    assert result.ok and result.prefixes["snapshots"].copied == 2
    replica = Repository.open(target, PASSWORD)
    checked = check(replica, DataSubset())
    assert checked.ok, checked.errors  # no index names a pack the replica lacks
    status = replication_status(source, target)
    assert status.missing["snapshots"].count == 1 and status.missing["index"].count == 1
    assert status.missing["data"].count >= 1

    replicate(source, target)
    assert replication_status(source, target).in_sync
    assert_restores_alone(target, data, tmp_path)
