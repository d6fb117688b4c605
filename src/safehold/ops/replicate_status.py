"""``replicate --status``: how far a replica is behind its primary, and what it lacks.

The lag is the age of the oldest point the primary can restore and the replica cannot
(``replica_lag.py``): zero when the replica restores all the primary does, the age of the
replica's newest restorable commit when its WAL or binlogs trail, and never zero while an
object a snapshot needs is missing. The replica's snapshots that the primary also has are
the same bytes (their names are their hashes), so only the replica's own are read from
it; a database's logs are read on the replica only when some of its objects are missing
there. Cheap enough to run every minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from safehold.errors import CorruptObject, NotFound
from safehold.ops.replica_lag import (
    KIND_NAMES,
    Behind,
    LogPoints,
    log_points,
    oldest_unrestorable,
)
from safehold.ops.replicate import COPY_ORDER, check_target, group_of, take_inventory
from safehold.repo.compression import decompress
from safehold.repo.crypto import content_hash
from safehold.repo.limits import MAX_DOCUMENT_BYTES
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.storage.base import ObjectStore

__all__ = ["PrefixDiff", "ReplicaStatus", "SnapshotRef", "replication_status"]


@dataclass(frozen=True)
class SnapshotRef:
    id: str
    time: str
    moment: datetime

    def to_doc(self) -> dict[str, str]:
        return {"id": self.id, "time": self.time}


@dataclass(frozen=True)
class PrefixDiff:
    kind: str  # what the objects are: "packs", "WAL", "binlogs", "index", "snapshots"...
    count: int
    bytes: int
    names: tuple[str, ...]  # the first ones, sorted

    def to_doc(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "count": self.count,
            "bytes": self.bytes,
            "names": list(self.names),
        }


@dataclass(frozen=True)
class ReplicaStatus:
    source: str
    target: str
    target_exists: bool
    primary_newest: SnapshotRef | None
    replica_newest: SnapshotRef | None
    lag_seconds: float | None  # None: the replica does not exist yet
    behind: Behind | None  # the oldest point the primary can restore and the replica cannot
    logs: tuple[LogPoints, ...]  # each database's newest restorable moment, on each side
    missing: dict[str, PrefixDiff]
    extra: dict[str, PrefixDiff]
    differing: tuple[str, ...]
    unreadable: tuple[str, ...]  # replica snapshots that could not be read

    @property
    def in_sync(self) -> bool:
        return not self.missing and not self.differing

    def missing_by_kind(self) -> dict[str, int]:
        """``{"WAL": 1, "packs": 2}``: how many objects of each kind the replica lacks."""
        return {diff.kind: diff.count for diff in self.missing.values()}


def _diff(objects: dict[str, int], cap: int) -> dict[str, PrefixDiff]:
    by_group: dict[str, list[str]] = {}
    for key in sorted(objects):
        by_group.setdefault(group_of(key), []).append(key)
    return {
        group: PrefixDiff(
            KIND_NAMES[group], len(keys), sum(objects[k] for k in keys), tuple(keys[:cap])
        )
        for group, keys in sorted(by_group.items(), key=lambda item: COPY_ORDER.index(item[0]))
    }


def _replica_snapshot(repo: Repository, target: ObjectStore, snapshot_id: str) -> Snapshot:
    name = f"snapshots/{snapshot_id}"
    sealed = target.get(name)
    if content_hash(sealed) != snapshot_id:
        raise CorruptObject(name, "content does not match its id")
    return Snapshot.from_bytes(
        decompress(repo.key.open(sealed, name), None, name, MAX_DOCUMENT_BYTES["snapshots"]),
        snapshot_id,
    )


def _newest(snapshots: Iterable[Snapshot]) -> SnapshotRef | None:
    best = max(snapshots, key=lambda s: (s.datetime, s.id), default=None)
    return None if best is None else SnapshotRef(best.id, best.time, best.datetime)


def replication_status(
    repo: Repository, target: ObjectStore, cap: int = 20, now: datetime | None = None
) -> ReplicaStatus:
    """How far the replica is behind: lag, what it cannot restore, objects missing or extra.

    Replica snapshots that the primary also has are the same bytes (their names are their
    hashes), so only the replica's own are read from it.
    """
    now = now or datetime.now(UTC)
    inventory = take_inventory(repo.store, target)
    check_target(repo.store, target, inventory)
    primary = {s.id: s for s in repo.list_snapshots()}
    replica: list[Snapshot] = []
    unreadable: list[str] = []
    for key in inventory.target:
        if group_of(key) != "snapshots":
            continue
        sid = key.removeprefix("snapshots/")
        if sid in primary:
            replica.append(primary[sid])
            continue
        try:
            replica.append(_replica_snapshot(repo, target, sid))
        except (CorruptObject, NotFound) as exc:
            unreadable.append(f"{key}: {exc}")
    logs: list[LogPoints] = []
    behind: Behind | None = None
    lag: float | None = None
    if inventory.target_exists:
        as_repo = Repository(target, repo.key, repo.config, repo.key_id)
        logs = log_points(repo, list(primary.values()), as_repo, replica, inventory)
        behind = oldest_unrestorable(list(primary.values()), inventory, logs)
        lag = 0.0 if behind is None else max(0.0, (now - behind.since).total_seconds())
    return ReplicaStatus(
        source=repo.store.location,
        target=target.location,
        target_exists=inventory.target_exists,
        primary_newest=_newest(primary.values()),
        replica_newest=_newest(replica),
        lag_seconds=lag,
        behind=behind,
        logs=tuple(logs),
        missing=_diff(inventory.missing(), cap),
        extra=_diff(inventory.extra(), cap),
        differing=tuple(inventory.differing()),
        unreadable=tuple(unreadable),
    )
