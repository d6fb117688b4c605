"""The PostgreSQL base backups among a repository's snapshots, and the choice for a target."""

from __future__ import annotations

from dataclasses import dataclass

from safehold.errors import InvalidArgument, SnapshotNotFound
from safehold.repo.snapshot import Snapshot, find_snapshot, parse_time
from safehold.sources.postgres.walnames import DEFAULT_SEGMENT_SIZE, parse_lsn

__all__ = ["RecoveryTarget", "backups_of", "choose_backup", "segment_size_of", "start_segno"]


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops: exactly one of the fields, or none for the latest point.

    ``immediate``: as soon as the base backup is consistent (``recovery_target =
    'immediate'``); a plan's stop for a time after every archived commit when the newest
    one is inside the backup itself (``recovery_plan.py``).
    """

    time: str | None = None
    lsn: str | None = None
    xid: int | None = None
    name: str | None = None
    immediate: bool = False

    @property
    def kind(self) -> str:
        for kind in ("time", "lsn", "xid", "name"):
            if getattr(self, kind) is not None:
                return kind
        return "immediate" if self.immediate else "latest"


def backups_of(snapshots: list[Snapshot], system_id: str | None = None) -> list[Snapshot]:
    """PostgreSQL base backups (of one cluster when ``system_id`` is given), oldest first."""
    return [
        s
        for s in snapshots
        if s.source.get("kind") == "postgres"
        and s.source.get("stop_lsn")
        and (system_id is None or s.source.get("system_id") == system_id)
    ]


def segment_size_of(snapshot: Snapshot) -> int:
    return int(snapshot.source.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)


def start_segno(snapshot: Snapshot) -> int:
    return parse_lsn(snapshot.source["start_lsn"]) // segment_size_of(snapshot)


def choose_backup(
    snapshots: list[Snapshot], target: RecoveryTarget, ref: str | None, system_id: str | None
) -> Snapshot:
    """The base backup to recover from: the given one, or the newest that ends before the target.

    A backup is usable once its stop point is reached, so for a time (or LSN) the newest
    backup whose stop time (stop LSN) is not after it; for an xid, the newest whose next
    xid at stop was not above it (the transaction then commits after the backup's end);
    for a restore point name, the oldest backup (any later point is reachable from it).
    """
    backups = backups_of(snapshots, system_id)
    if ref is not None:
        return find_snapshot(backups, ref)
    clusters = {s.source["system_id"] for s in backups}
    if len(clusters) > 1:
        raise InvalidArgument(
            f"the repository holds backups of {len(clusters)} clusters "
            f"({', '.join(sorted(clusters))}): choose one with --system-id"
        )
    if target.time is not None:
        moment = parse_time(target.time)
        fit = [s for s in backups if parse_time(s.source["stop_time"]) <= moment]
    elif target.lsn is not None:
        lsn = parse_lsn(target.lsn)
        fit = [s for s in backups if parse_lsn(s.source["stop_lsn"]) <= lsn]
    elif target.xid is not None:
        xid = target.xid
        fit = [s for s in backups if int(s.source.get("next_xid", 1 << 62)) <= xid]
    elif target.name is not None:
        fit = backups[:1]
    else:
        fit = backups
    if not backups:
        raise SnapshotNotFound("a PostgreSQL base backup (none in this repository)")
    if not fit:
        oldest = backups[0].source
        raise InvalidArgument(
            f"no base backup ends before the {target.kind} target; the oldest ended at "
            f"{oldest['stop_time']} (LSN {oldest['stop_lsn']})"
        )
    return max(fit, key=lambda s: parse_time(s.source["stop_time"]))
