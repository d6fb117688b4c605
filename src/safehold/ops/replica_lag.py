"""A replica's lag: for how long it has been unable to restore something the primary can.

What the primary can restore: each snapshot, at its time, and for a database with archived
logs every moment of the windows its logs replay through (``pg status``'s and ``mysql
status``'s windows: a backup, then the WAL or binlogs that follow it without a gap, up to
the newest commit in them). The replica cannot restore a snapshot that it lacks, nor one
that may need an object it lacks: a pack, an index, a key written on the primary before
the snapshot was (a snapshot needs nothing written after it); and it cannot restore the
part of a log window past where its own copy of the logs stops.

The lag is the age of the oldest such point: zero when the replica can restore all that
the primary can, and never zero while an object a snapshot needs is missing. For a
database whose logs trail, that oldest point is the replica's newest restorable commit, so
the lag is the age of that commit: what losing the primary's region would cost now.
Reading a database's windows means fetching log files and reading their commit times
(pg_waldump), so a database none of whose objects are missing on the replica is read
once, on the primary: the replica's copy is the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from safehold.ops.replicate import Inventory, group_of
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, parse_time

__all__ = [
    "KIND_NAMES",
    "Behind",
    "LogPoints",
    "Window",
    "first_uncovered",
    "log_points",
    "oldest_unrestorable",
]

KIND_NAMES = {
    "keys": "keys",
    "config": "config",
    "data": "packs",
    "wal": "WAL",
    "binlog": "binlogs",
    "other": "other",
    "index": "index",
    "snapshots": "snapshots",
}
_NEEDED_BY_SNAPSHOTS = ("keys", "config", "data", "index")


@dataclass(frozen=True)
class Window:
    """A span of time every moment of which can be restored."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class LogPoints:
    """One database's restore windows from its archived logs, on each side."""

    kind: str  # "postgres" or "mysql"
    name: str  # the cluster's system identifier, the instance's name
    primary: tuple[Window, ...]
    replica: tuple[Window, ...]

    @property
    def primary_newest(self) -> datetime | None:
        return max((w.end for w in self.primary), default=None)

    @property
    def replica_newest(self) -> datetime | None:
        return max((w.end for w in self.replica), default=None)

    def to_doc(self) -> dict[str, object]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "kind": self.kind,
            "name": self.name,
            "primary_newest": iso(self.primary_newest),
            "replica_newest": iso(self.replica_newest),
        }


@dataclass(frozen=True)
class Behind:
    """The oldest moment the primary can restore and the replica cannot, and why."""

    since: datetime
    reason: str

    def to_doc(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "reason": self.reason}


def first_uncovered(primary: list[Window], replica: list[Window]) -> datetime | None:
    """The oldest moment of the ``primary`` windows that no ``replica`` window reaches;
    where the replica covers the start of a window but not all of it, the end of what it
    covers (its newest restorable moment there). None: everything is covered."""
    found: list[datetime] = []
    for window in primary:
        moment: datetime | None = window.start
        while moment is not None:
            reach = max((r.end for r in replica if r.start <= moment <= r.end), default=None)
            if reach is None or (reach == moment and moment < window.end):
                found.append(moment)
                break
            moment = None if reach >= window.end else reach
    return min(found, default=None)


def _kinds(groups: set[str]) -> str:
    order = list(KIND_NAMES)
    return ", ".join(KIND_NAMES[g] for g in sorted(groups, key=order.index))


def _snapshot_behind(snapshots: list[Snapshot], inventory: Inventory) -> Behind | None:
    """The oldest snapshot of the primary that the replica lacks or may not restore."""
    missing = inventory.missing()
    earliest: dict[str, datetime | None] = {}  # group → oldest write among its missing
    for key in missing:
        group = group_of(key)
        if group not in _NEEDED_BY_SNAPSHOTS:
            continue
        written = inventory.written.get(key)  # None: the store does not say
        if group not in earliest:
            earliest[group] = written
        else:
            known = earliest[group]
            earliest[group] = None if known is None or written is None else min(known, written)
    for snap in sorted(snapshots, key=lambda s: (s.datetime, s.id)):
        name = f"snapshots/{snap.id}"
        written = inventory.written.get(name)
        lacking = {"snapshots"} if name in missing else set()
        lacking |= {
            group
            for group, first in earliest.items()
            if first is None or written is None or first <= written
        }
        if lacking:
            return Behind(
                snap.datetime,
                f"snapshot {snap.short_id} of {snap.time}: missing on the replica: "
                + _kinds(lacking),
            )
    return None


def _log_behind(points: list[LogPoints]) -> Behind | None:
    worst: Behind | None = None
    for db in points:
        since = first_uncovered(list(db.primary), list(db.replica))
        if since is None or (worst is not None and worst.since <= since):
            continue
        label = (
            "WAL of PostgreSQL cluster" if db.kind == "postgres" else "binlogs of MariaDB instance"
        )
        newest = db.primary_newest.isoformat() if db.primary_newest else "?"
        if any(r.start <= since <= r.end for r in db.replica):
            where = f"the replica restores to {since.isoformat()}"
        else:  # no backup of this window (or not its first logs) on the replica
            where = f"the replica cannot restore from {since.isoformat()} on"
        worst = Behind(since, f"{label} {db.name}: {where}, the primary to {newest}")
    return worst


def oldest_unrestorable(
    snapshots: list[Snapshot], inventory: Inventory, points: list[LogPoints]
) -> Behind | None:
    """The oldest point of the primary that the replica cannot restore (None: none)."""
    found = [b for b in (_snapshot_behind(snapshots, inventory), _log_behind(points)) if b]
    return min(found, key=lambda b: b.since, default=None)


# -- the databases' windows -------------------------------------------------------------


def _pg_windows(repo: Repository, snapshots: list[Snapshot], system_id: str) -> list[Window]:
    from safehold.sources.postgres.status import cluster_status

    found = []
    for w in cluster_status(repo, snapshots, system_id).windows:
        start = datetime.fromisoformat(str(w["from"]))
        end = datetime.fromisoformat(str(w["to"])) if w.get("to") else start
        found.append(Window(start, max(start, end)))
    return found


def _mysql_windows(repo: Repository, instance: str) -> list[Window]:
    from safehold.sources.mysql.status import instance_status

    found = []
    for w in instance_status(repo, instance).windows:
        start = parse_time(str(w["from"]))
        found.append(Window(start, max(start, parse_time(str(w["to"])))))
    return found


def _databases(snapshots: list[Snapshot], inventory: Inventory) -> list[tuple[str, str]]:
    """(kind, name) of every database with backups or archived logs on the primary."""
    found: set[tuple[str, str]] = set()
    for key in inventory.source:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] in ("wal", "binlog"):
            found.add(("postgres" if parts[0] == "wal" else "mysql", parts[1]))
    for snap in snapshots:
        kind = snap.source.get("kind")
        if kind == "postgres" and snap.source.get("system_id"):
            found.add(("postgres", str(snap.source["system_id"])))
        elif kind == "mysql" and snap.source.get("instance"):  # physical backups
            found.add(("mysql", str(snap.source["instance"])))
    return sorted(found)


def _touches(kind: str, name: str, inventory: Inventory, snapshots: list[Snapshot]) -> bool:
    """Whether an object of this database (a log file, a backup) is missing on the replica."""
    prefix = f"{'wal' if kind == 'postgres' else 'binlog'}/{name}/"
    missing = inventory.missing()
    if any(key.startswith(prefix) for key in missing):
        return True
    field = "system_id" if kind == "postgres" else "instance"
    return any(
        f"snapshots/{s.id}" in missing and str(s.source.get(field)) == name for s in snapshots
    )


def log_points(
    primary: Repository,
    primary_snapshots: list[Snapshot],
    replica: Repository,
    replica_snapshots: list[Snapshot],
    inventory: Inventory,
) -> list[LogPoints]:
    """Each database's restore windows on the primary and on the replica."""
    result = []
    for kind, name in _databases(primary_snapshots, inventory):
        on_primary = _windows(kind, name, primary, primary_snapshots)
        on_replica = (
            _windows(kind, name, replica, replica_snapshots)
            if _touches(kind, name, inventory, primary_snapshots)
            else on_primary
        )
        result.append(LogPoints(kind, name, tuple(on_primary), tuple(on_replica)))
    return result


def _windows(kind: str, name: str, repo: Repository, snapshots: list[Snapshot]) -> list[Window]:
    return _pg_windows(repo, snapshots, name) if kind == "postgres" else _mysql_windows(repo, name)
