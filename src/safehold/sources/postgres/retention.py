"""Which archived WAL prune may delete: what no kept base backup needs.

A base backup needs every WAL file from its start segment on (recovery to any later point
replays from there, across timeline switches, whose LSNs only grow). So, per cluster
(system id), everything below the smallest start segment of the kept base backups is
unneeded: segments, .partial and .backup files of any timeline. Kept always:
- history files (``TTTTTTTT.history``): a few bytes each, and PostgreSQL reads them to pick
  the next timeline id at a promotion; without them it could reuse a number and collide;
- all WAL of a cluster with no kept base backup (a backup may be running right now, its
  snapshot not yet written: its WAL must survive a concurrent prune);
- anything whose name safehold does not parse.

The lead's prune calls ``unneeded_wal(repo, kept_snapshots)`` and deletes the keys returned.
"""

from __future__ import annotations

from collections.abc import Iterable

from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.postgres.catalog import backups_of, segment_size_of, start_segno
from safehold.sources.postgres.walarchive import PREFIX, list_system_ids, list_wal

__all__ = ["unneeded_wal"]


def unneeded_wal(repo: Repository, kept: Iterable[Snapshot]) -> list[str]:
    """Object keys under ``wal/`` that no kept PostgreSQL base backup needs, sorted."""
    kept_backups = backups_of(list(kept))
    doomed: list[str] = []
    for system_id in list_system_ids(repo.store):
        mine = [s for s in kept_backups if s.source.get("system_id") == system_id]
        if not mine:
            continue
        seg_size = segment_size_of(mine[0])
        oldest = min(start_segno(s) for s in mine)
        for wal in list_wal(repo.store, system_id):
            if wal.kind != "history" and wal.segno(seg_size) < oldest:
                doomed.append(f"{PREFIX}{system_id}/{wal.name}")
    return sorted(doomed)
