"""``replicate --status``: how far a replica is behind its primary, and what it lacks.

The lag is the newest snapshot time on the primary minus the newest on the replica. The
replica's snapshots that the primary also has are the same bytes (their names are their
hashes), so only the replica's own are read from it: cheap enough to run every minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from safehold.errors import CorruptObject, NotFound
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
    count: int
    bytes: int
    names: tuple[str, ...]  # the first ones, sorted

    def to_doc(self) -> dict[str, object]:
        return {"count": self.count, "bytes": self.bytes, "names": list(self.names)}


@dataclass(frozen=True)
class ReplicaStatus:
    source: str
    target: str
    target_exists: bool
    primary_newest: SnapshotRef | None
    replica_newest: SnapshotRef | None
    lag_seconds: float | None  # None: the replica has no snapshot while the primary has
    missing: dict[str, PrefixDiff]
    extra: dict[str, PrefixDiff]
    differing: tuple[str, ...]
    unreadable: tuple[str, ...]  # replica snapshots that could not be read

    @property
    def in_sync(self) -> bool:
        return not self.missing and not self.differing


def _diff(objects: dict[str, int], cap: int) -> dict[str, PrefixDiff]:
    by_group: dict[str, list[str]] = {}
    for key in sorted(objects):
        by_group.setdefault(group_of(key), []).append(key)
    return {
        group: PrefixDiff(len(keys), sum(objects[k] for k in keys), tuple(keys[:cap]))
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


def replication_status(repo: Repository, target: ObjectStore, cap: int = 20) -> ReplicaStatus:
    """How far the replica is behind: newest snapshots, lag, objects missing or extra.

    Replica snapshots that the primary also has are the same bytes (their names are their
    hashes), so only the replica's own are read from it.
    """
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
    newest_primary, newest_replica = _newest(primary.values()), _newest(replica)
    lag: float | None = 0.0
    if newest_primary is not None:
        if newest_replica is None:
            lag = None
        else:
            lag = max(0.0, (newest_primary.moment - newest_replica.moment).total_seconds())
    return ReplicaStatus(
        source=repo.store.location,
        target=target.location,
        target_exists=inventory.target_exists,
        primary_newest=newest_primary,
        replica_newest=newest_replica,
        lag_seconds=lag,
        missing=_diff(inventory.missing(), cap),
        extra=_diff(inventory.extra(), cap),
        differing=tuple(inventory.differing()),
        unreadable=tuple(unreadable),
    )
