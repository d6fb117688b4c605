"""What a drill adds to the recovery engine's disk estimate: the archived WAL a PostgreSQL
source replays, which the data directory may grow by (an upper bound: every segment from
the base backup's start on). The engine's preflight then refuses, with one line and
nothing written, when the sandbox's file system cannot hold the snapshots plus that."""

from __future__ import annotations

from safehold.dr.recovery.plan import RecoveryPlan
from safehold.repo.repository import Repository

__all__ = ["add_wal_to_estimate"]


def add_wal_to_estimate(repo: Repository, plan: RecoveryPlan) -> int:
    """Add each PostgreSQL source's WAL to replay to its planned size; returns the bytes."""
    from safehold.sources.postgres.catalog import segment_size_of, start_segno
    from safehold.sources.postgres.walarchive import list_wal

    snapshots = {s.id: s for s in repo.list_snapshots()}
    added = 0
    for sp in plan.sources:
        snap = snapshots.get(sp.snapshot_id)
        if sp.kind != "postgres" or snap is None or not snap.source.get("system_id"):
            continue
        size, first = segment_size_of(snap), start_segno(snap)
        segments = sum(
            1
            for wal in list_wal(repo.store, str(snap.source["system_id"]))
            if wal.kind == "segment" and wal.segno(size) >= first
        )
        sp.size += segments * size
        added += segments * size
    return added
