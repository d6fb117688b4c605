"""Which archived binary logs prune may delete: what no kept backup of the instance needs.

Point-in-time recovery replays binlogs from a backup's recorded position on (the
``binlog_file`` of a mariabackup or dump snapshot). So per instance, every log numbered
below the oldest such file among the kept backups is unneeded. An instance with no kept
backup that records a position keeps all its logs (a first backup may be running now).
Names that do not parse are kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from safehold.errors import CorruptObject
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.mysql import logical, physical
from safehold.sources.mysql.binlog import binlog_key, binlog_number, list_binlogs, list_instances

__all__ = ["unneeded_binlogs"]

KINDS = (physical.KIND, logical.KIND)


def unneeded_binlogs(repo: Repository, kept: Iterable[Snapshot]) -> list[str]:
    """Object keys under ``binlog/`` that no kept MariaDB backup needs, sorted."""
    starts: dict[str, list[int]] = {}
    for s in kept:
        first = s.source.get("binlog_file")
        if s.source.get("kind") in KINDS and isinstance(first, str):
            try:
                starts.setdefault(str(s.source.get("instance")), []).append(binlog_number(first))
            except CorruptObject:
                continue
    doomed: list[str] = []
    for instance in list_instances(repo.store):
        if instance not in starts:
            continue
        oldest = min(starts[instance])
        doomed.extend(
            binlog_key(instance, name)
            for name in list_binlogs(repo.store, instance)
            if binlog_number(name) < oldest
        )
    return sorted(doomed)
