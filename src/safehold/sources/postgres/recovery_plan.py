"""What a point-in-time recovery will do, decided before any file is written; and, after it,
whether it reached what was asked.

- **Lineage.** Recovery follows production's timeline lineage (``lineage.py``), never the
  highest archived timeline: ``recovery_target_timeline`` is production's timeline number,
  and only base backups taken on that lineage are candidates. ``--timeline N`` (or
  ``latest``, PostgreSQL's own choice) follows another branch on purpose.
- **A time at the end of the archive.** PostgreSQL stops a time target at the first commit
  *after* it; when no such commit is archived yet (the target is the newest commit that
  status shows, or later) it would end with "recovery ended before configured recovery
  target was reached". Then the target becomes the xid of the newest archived commit at
  or before the time (inclusive: recovery stops right after that commit record, so
  everything before it in the WAL is replayed too), which is exactly the same stop.
- **Check.** After recovery, the commits archived after the point reached are read: one
  at or before a time target means recovery stopped short of it, and the restore fails
  saying so instead of printing success.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from safehold.errors import InvalidArgument, SafeholdError, SnapshotNotFound
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, parse_time
from safehold.sources.postgres.catalog import (
    RecoveryTarget,
    backups_of,
    choose_backup,
    segment_size_of,
    start_segno,
)
from safehold.sources.postgres.lineage import (
    Lineage,
    WalArchive,
    lineage_of,
    lineage_segments,
    production_lineage,
    read_archive,
)
from safehold.sources.postgres.physical import PostgresError
from safehold.sources.postgres.status import pg_bin_dir
from safehold.sources.postgres.waldump import Commit, segment_commits
from safehold.sources.postgres.walnames import WalName, format_lsn, parse_lsn

__all__ = ["RecoveryPlan", "RestoreShort", "check_reached", "plan_recovery"]

LOOKBACK_SEGMENTS = 8


class RestoreShort(PostgresError):
    """PostgreSQL: {0}"""


@dataclass
class RecoveryPlan:
    """The base backup, the lineage followed, and what PostgreSQL is told.

    ``target`` is what was asked; ``stop`` is what goes into the recovery settings (the
    same, except a time with no later commit archived, which becomes that commit's xid).
    ``timeline`` is the value of ``recovery_target_timeline``.
    """

    snapshot: Snapshot
    lineage: Lineage
    timeline: str
    target: RecoveryTarget
    stop: RecoveryTarget
    inclusive: bool = True
    note: str | None = None

    @property
    def pg_bin(self) -> str:
        return pg_bin_dir(int(self.snapshot.source.get("version", 0)) or None)


def plan_recovery(
    repo: Repository,
    target: RecoveryTarget,
    snapshot_ref: str | None = None,
    system_id: str | None = None,
    timeline: str | None = None,
    inclusive: bool = True,
) -> RecoveryPlan:
    """Choose the base backup and lineage for ``target``.

    ``timeline``: None (production's lineage), ``current`` (the base backup's timeline),
    ``latest`` (the highest archived: PostgreSQL's own rule) or a timeline number.
    """
    snapshots = repo.list_snapshots()
    system_id = _system_id(backups_of(snapshots, system_id), snapshot_ref, system_id)
    archive = read_archive(repo.store, system_id)
    production = production_lineage(repo, system_id, snapshots, archive)
    setting, lineage = _lineage(
        repo, snapshots, production, archive, timeline, target, snapshot_ref
    )
    backups = backups_of(snapshots, system_id)
    if snapshot_ref is not None:
        snap = find_snapshot(backups, snapshot_ref)
        if not lineage.holds(snap):
            raise InvalidArgument(
                f"base backup {snap.short_id} is on timeline {snap.source.get('timeline')}, "
                f"not on the lineage followed ({lineage.describe()}); give --timeline "
                f"{snap.source.get('timeline')} to restore that branch"
            )
    else:
        snap = choose_backup([b for b in backups if lineage.holds(b)], target, None, system_id)
    plan = RecoveryPlan(snap, lineage, setting, target, target, inclusive)
    if target.time is not None:
        _end_of_archive(repo, plan, archive.files)
    if production.steps != lineage.steps:
        warning = (
            f"WARNING: following timelines {lineage.describe()}, NOT production's lineage "
            f"({production.describe()}), as --timeline {timeline} asks."
        )
        plan.note = f"{warning} {plan.note}" if plan.note else warning
    return plan


def _system_id(backups: list[Snapshot], snapshot_ref: str | None, system_id: str | None) -> str:
    if snapshot_ref is not None:
        return str(find_snapshot(backups, snapshot_ref).source["system_id"])
    if system_id is not None:
        return system_id
    clusters = sorted({str(s.source["system_id"]) for s in backups})
    if not clusters:
        raise SnapshotNotFound("a PostgreSQL base backup (none in this repository)")
    if len(clusters) > 1:
        raise InvalidArgument(
            f"the repository holds backups of {len(clusters)} clusters "
            f"({', '.join(clusters)}): choose one with --system-id"
        )
    return clusters[0]


def _lineage(
    repo: Repository,
    snapshots: list[Snapshot],
    production: Lineage,
    archive: WalArchive,
    timeline: str | None,
    target: RecoveryTarget,
    snapshot_ref: str | None,
) -> tuple[str, Lineage]:
    """(recovery_target_timeline, the lineage it means)."""
    system_id = production.system_id
    if timeline in (None, "", "production"):
        return str(production.timeline), production
    if timeline == "latest":
        highest = max((w.timeline for w in archive.files), default=1)
        return "latest", lineage_of(repo, system_id, highest)
    if timeline == "current":
        snap = choose_backup(backups_of(snapshots, system_id), target, snapshot_ref, system_id)
        number = int(snap.source.get("timeline") or 1)
        return str(number), lineage_of(repo, system_id, number)
    try:
        number = int(str(timeline))
    except ValueError:
        raise InvalidArgument(
            f"--timeline {timeline!r}: give a timeline number, current or latest"
        ) from None
    return str(number), lineage_of(repo, system_id, number)


def _end_of_archive(repo: Repository, plan: RecoveryPlan, files: list[WalName]) -> None:
    """A time target with no later commit archived becomes its last commit's xid, or the
    end of the base backup when no commit follows that."""
    assert plan.target.time is not None
    moment = parse_time(plan.target.time)
    seg_size = segment_size_of(plan.snapshot)
    segments = lineage_segments(plan.lineage, files, seg_size)
    last = start_segno(plan.snapshot)
    if last not in segments:
        return  # the backup's first segment is missing: recovery names it
    while last + 1 in segments:
        last += 1
    if any(n > last for n in segments):
        return  # a gap, then more WAL: recovery stops at the gap and says so
    newest = _newest_commit(repo, plan, segments, last, start_segno(plan.snapshot))
    if newest is not None and not _at_or_after(moment, newest.time, plan.inclusive):
        return  # a later commit is archived: PostgreSQL's time target stops right there
    backup_end = parse_lsn(plan.snapshot.source["stop_lsn"])
    if newest is None and last - LOOKBACK_SEGMENTS > backup_end // seg_size:
        return  # not read back to the backup's end: PostgreSQL's own answer, loud if wrong
    plan.inclusive = True
    if newest is None or newest.lsn < backup_end:
        # no commit after the backup's end at all: the backup itself, once consistent,
        # is the point (an xid stop inside it would be "before consistent recovery point")
        plan.stop = RecoveryTarget(immediate=True)
        plan.note = (
            f"no commit after {plan.target.time} and none after the base backup is "
            "archived: recovering to the end of the base backup"
        )
        return
    plan.stop = RecoveryTarget(xid=newest.xid)
    plan.note = (
        f"no commit after {plan.target.time} is archived yet: recovering up to the newest "
        f"archived commit, {newest.time.isoformat()} (xid {newest.xid}, "
        f"LSN {format_lsn(newest.lsn)})"
    )


def _at_or_after(moment: datetime, commit_time: datetime, inclusive: bool) -> bool:
    return moment >= commit_time if inclusive else moment > commit_time


def _newest_commit(
    repo: Repository, plan: RecoveryPlan, segments: dict[int, WalName], last: int, first: int
) -> Commit | None:
    for n in range(last, max(first, last - LOOKBACK_SEGMENTS) - 1, -1):
        try:
            commits = segment_commits(repo, plan.lineage.system_id, segments[n].name, plan.pg_bin)
        except SafeholdError:
            continue  # unreadable: recovery names it
        if commits:
            return commits[-1]
    return None


def check_reached(
    repo: Repository, plan: RecoveryPlan, reached_time: str | None, reached_lsn: str | None
) -> None:
    """Fail when recovery stopped before an archived commit that the time target includes,
    or replayed one after it."""
    if plan.target.time is None or reached_lsn is None:
        return
    moment = parse_time(plan.target.time)
    if reached_time is not None and not _at_or_after(
        moment, parse_time(reached_time), plan.inclusive
    ):
        raise RestoreShort(
            f"recovery replayed a commit of {reached_time}, after the target {plan.target.time}"
        )
    start = parse_lsn(reached_lsn)
    seg_size = segment_size_of(plan.snapshot)
    segments = lineage_segments(
        plan.lineage, read_archive(repo.store, plan.lineage.system_id).files, seg_size
    )
    first = start // seg_size
    for n in range(first, first + LOOKBACK_SEGMENTS):
        if n not in segments:
            return
        for commit in segment_commits(repo, plan.lineage.system_id, segments[n].name, plan.pg_bin):
            if commit.lsn < start:
                continue
            if not _at_or_after(moment, commit.time, plan.inclusive):
                return  # the first commit after the point reached is after the target: exact
            raise RestoreShort(
                f"recovery stopped short of the target {plan.target.time}: it reached "
                f"{reached_time or 'no transaction'} (LSN {reached_lsn}), but the archive "
                f"holds a commit of {commit.time.isoformat()} (LSN {format_lsn(commit.lsn)}, "
                f"timeline {segments[n].timeline}) before the target; the restored cluster "
                "is running but incomplete"
            )
