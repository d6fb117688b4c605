"""What a repository can restore for each MariaDB instance: backups, binlogs, gaps, windows.

A binlog missing between archived ones is a gap: replay cannot pass it, so it ends a
restorable window. A window runs from the end of the oldest physical backup whose binlog
position lies in a run of consecutive archived logs to the last transaction in the run's
newest log. RPO exposure is the time since that last archived transaction.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.repo.repository import Repository
from safehold.sources.mysql.binlog import (
    binlog_number,
    fetch_binlog,
    last_commit_time,
    list_binlogs,
    list_instances,
)
from safehold.sources.mysql.logical import dump_snapshots
from safehold.sources.mysql.physical import format_utc, physical_backups, stop_time_of

__all__ = ["InstanceStatus", "all_statuses"]


@dataclass
class InstanceStatus:
    instance: str
    backups: list[dict[str, Any]] = field(default_factory=list)
    dumps: list[dict[str, Any]] = field(default_factory=list)
    binlog_files: int = 0
    binlog_first: str | None = None
    binlog_last: str | None = None
    gaps: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    newest_binlog_time: str | None = None
    rpo_exposure_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _runs(names: list[str]) -> list[list[str]]:
    runs: list[list[str]] = []
    for name in names:
        if runs and binlog_number(name) == binlog_number(runs[-1][-1]) + 1:
            runs[-1].append(name)
        else:
            runs.append([name])
    return runs


def instance_status(repo: Repository, instance: str, now: datetime | None = None) -> InstanceStatus:
    status = InstanceStatus(instance)
    backups = physical_backups(repo, instance)
    for b in backups:
        status.backups.append(
            {k: b.source.get(k) for k in ("type", "stop_time", "binlog_file", "binlog_pos")}
            | {"snapshot": b.id, "short_id": b.short_id, "base": (b.source.get("base") or "")[:8]}
        )
    for d in dump_snapshots(repo, instance):
        status.dumps.append(
            {"snapshot": d.id, "short_id": d.short_id, "time": d.time}
            | {k: d.source.get(k) for k in ("binlog_file", "binlog_pos", "gtid")}
        )
    names = list_binlogs(repo.store, instance)
    status.binlog_files = len(names)
    if names:
        status.binlog_first, status.binlog_last = names[0], names[-1]
    runs = _runs(names)
    for before, after in itertools.pairwise(runs):
        status.gaps.append(
            {
                "after": before[-1],
                "before": after[0],
                "files": binlog_number(after[0]) - binlog_number(before[-1]) - 1,
            }
        )
    newest: datetime | None = None
    for run in runs:
        in_run = {binlog_number(n) for n in run}
        usable = [
            b
            for b in backups
            if b.source.get("binlog_file") and binlog_number(b.source["binlog_file"]) in in_run
        ]
        end = last_commit_time(fetch_binlog(repo, instance, run[-1]))
        if end is not None and (newest is None or end > newest):
            newest = end
        if usable:
            start = min(stop_time_of(b) for b in usable)
            status.windows.append(
                {
                    "from": format_utc(start),
                    "to": format_utc(max(end, start)) if end else format_utc(start),
                    "first_binlog": run[0],
                    "last_binlog": run[-1],
                    "backups": [b.short_id for b in usable],
                }
            )
    covered = {s for w in status.windows for s in w["backups"]}
    for b in backups:  # a backup without archived binlogs restores to its own end only
        if b.short_id not in covered:
            moment = format_utc(stop_time_of(b))
            status.windows.append({"from": moment, "to": moment, "backups": [b.short_id]})
    status.windows.sort(key=lambda w: str(w["from"]))
    if newest is None and backups:
        newest = stop_time_of(backups[-1])
    if newest is not None:
        status.newest_binlog_time = format_utc(newest)
        status.rpo_exposure_seconds = round(
            ((now or datetime.now(UTC)) - newest).total_seconds(), 1
        )
    return status


def all_statuses(repo: Repository) -> list[InstanceStatus]:
    instances = set(list_instances(repo.store))
    instances |= {s.source["instance"] for s in physical_backups(repo)}
    instances |= {s.source["instance"] for s in dump_snapshots(repo)}
    return [instance_status(repo, i) for i in sorted(instances)]
