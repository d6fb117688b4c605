"""What a repository can restore for each cluster: backups, archived WAL, gaps, windows.

Everything is read along production's lineage (``lineage.py``): WAL of a timeline that
is not production's (a restored copy that archived) is counted and named, never used for
windows or the newest commit. A segment missing from the archive while later ones exist
is a gap: recovery cannot pass it, so it splits the restorable window. Times inside WAL
are read with pg_waldump (the commit records' timestamps) from the last segment before
each gap and the newest one.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.errors import SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, parse_time
from safehold.sources.postgres.catalog import backups_of, segment_size_of, start_segno
from safehold.sources.postgres.lineage import (
    Lineage,
    lineage_segments,
    production_lineage,
    read_archive,
)
from safehold.sources.postgres.walarchive import REFUSED_SUFFIX, fetch_wal, list_system_ids
from safehold.sources.postgres.waldump import segment_commits
from safehold.sources.postgres.walnames import (
    DEFAULT_SEGMENT_SIZE,
    WalName,
    parse_wal_name,
    segment_name,
)

__all__ = [
    "ClusterStatus",
    "archiving_stuck_on",
    "cluster_status",
    "pg_bin_dir",
    "segment_runs",
    "wal_gaps_after",
]

LOOKBACK_SEGMENTS = 8


@dataclass
class ClusterStatus:
    system_id: str
    backups: list[dict[str, Any]] = field(default_factory=list)
    wal_first: str | None = None
    wal_last: str | None = None
    wal_files: int = 0
    corrupt: list[str] = field(default_factory=list)
    timelines: list[int] = field(default_factory=list)
    production_timeline: int | None = None
    lineage: list[int] = field(default_factory=list)
    lineage_recorded: bool = False
    other_timelines: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # pushes refused (conflicts)
    archiving_stuck_on: str | None = None  # a refused segment nothing newer followed
    gaps: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    newest_wal_time: str | None = None
    rpo_exposure_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def pg_bin_dir(version: int | None = None) -> str:
    """Where the PostgreSQL programs of ``version`` are (Debian's layout first)."""
    if version:
        debian = f"/usr/lib/postgresql/{version // 10000}/bin"
        if os.path.isdir(debian):
            return debian
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    candidates = (
        sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else []
    )
    return f"/usr/lib/postgresql/{candidates[-1]}/bin" if candidates else "/usr/bin"


def segment_runs(segnos: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs ``(first, last)`` of sorted segment numbers."""
    runs: list[tuple[int, int]] = []
    for n in sorted(segnos):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def wal_gaps_after(
    repo: Repository, snap: Snapshot, verify: bool = False, lineage: Lineage | None = None
) -> list[str]:
    """Names of segments missing between a backup's start and the newest archived segment
    of the lineage (production's unless given).

    With ``verify`` each segment is also read and decrypted; an unreadable one counts as
    missing (recovery cannot use it either).
    """
    seg_size = segment_size_of(snap)
    system_id = snap.source["system_id"]
    archive = read_archive(repo.store, system_id)
    lineage = lineage or production_lineage(repo, system_id, archive=archive)
    by_segno = lineage_segments(lineage, archive.files, seg_size)
    first = start_segno(snap)
    if verify:
        _drop_unreadable(
            repo, system_id, {n: w for n, w in by_segno.items() if n >= first}, by_segno
        )
    present = sorted(n for n in by_segno if n >= first)
    missing: list[str] = []
    expected = first
    for n in present:
        missing += [
            segment_name(lineage.timeline_of_segment(m, seg_size), m, seg_size)
            for m in range(expected, n)
        ]
        expected = n + 1
    return missing


def _drop_unreadable(
    repo: Repository, system_id: str, check: dict[int, WalName], by_segno: dict[int, WalName]
) -> list[str]:
    bad = []
    for n, w in sorted(check.items()):
        try:
            fetch_wal(repo, system_id, w.name)
        except SafeholdError:
            bad.append(w.name)
            del by_segno[n]
    return bad


def last_commit_time(repo: Repository, system_id: str, name: str, pg_bin: str) -> datetime | None:
    """The newest commit (or abort) time recorded in one archived segment."""
    commits = segment_commits(repo, system_id, name, pg_bin)
    return commits[-1].time if commits else None


def _time_before(
    repo: Repository,
    system_id: str,
    by_segno: dict[int, WalName],
    last: int,
    first: int,
    pg_bin: str,
) -> datetime | None:
    for n in range(last, max(first, last - LOOKBACK_SEGMENTS) - 1, -1):
        if n in by_segno:
            try:
                found = last_commit_time(repo, system_id, by_segno[n].name, pg_bin)
            except SafeholdError:
                continue  # unreadable: `status --verify` reports it
            if found is not None:
                return found
    return None


def cluster_status(
    repo: Repository,
    snapshots: list[Snapshot],
    system_id: str,
    now: datetime | None = None,
    verify: bool = False,
) -> ClusterStatus:
    backups = backups_of(snapshots, system_id)
    seg_size = segment_size_of(backups[-1]) if backups else DEFAULT_SEGMENT_SIZE
    pg_bin = pg_bin_dir(int(backups[-1].source.get("version", 0)) if backups else None)
    archive = read_archive(repo.store, system_id)
    files = archive.files
    lineage = production_lineage(repo, system_id, snapshots, archive)
    by_segno = lineage_segments(lineage, files, seg_size)
    status = ClusterStatus(system_id, wal_files=len(files))
    status.timelines = sorted({w.timeline for w in files})
    status.production_timeline = lineage.timeline
    status.lineage = lineage.timelines
    status.lineage_recorded = lineage.claimed
    status.other_timelines = list(lineage.others)
    status.warnings = [
        f"timeline {t} is archived but not recorded as production's (no base backup on it, "
        f"no `wal-push --primary` claim): restores and status do not follow it; if the "
        f"cluster now runs on it, take a base backup; to restore it, `--timeline {t}`"
        for t in lineage.others
        if t > lineage.timeline
    ]
    status.refused = [_refusal(repo, key) for key in archive.refusals]
    status.warnings += [_refusal_warning(r) for r in status.refused]
    status.archiving_stuck_on = _stuck_on(archive.refusals, lineage, by_segno, seg_size)
    if verify:
        status.corrupt = _drop_unreadable(repo, system_id, dict(by_segno), by_segno)
    for b in backups:
        status.backups.append(
            {
                k: b.source.get(k)
                for k in ("type", "timeline", "start_lsn", "stop_lsn", "start_time", "stop_time")
            }
            | {"snapshot": b.id, "short_id": b.short_id}
        )
    if by_segno:
        status.wal_first = by_segno[min(by_segno)].name
        status.wal_last = by_segno[max(by_segno)].name
    runs = segment_runs(list(by_segno))
    for (_, end), (nxt, _) in itertools.pairwise(runs):
        status.gaps.append(
            {
                "first_missing": _lineage_name(lineage, end + 1, seg_size),
                "last_missing": _lineage_name(lineage, nxt - 1, seg_size),
                "segments": nxt - end - 1,
            }
        )
    for first, last in runs:
        usable = [
            b
            for b in backups
            if lineage.holds(b) and first <= start_segno(b) <= last and parse_lsn_segno(b) <= last
        ]
        if not usable:
            continue
        earliest = min(parse_time(b.source["stop_time"]) for b in usable)
        latest = _time_before(repo, system_id, by_segno, last, first, pg_bin)
        status.windows.append(
            {
                "from": earliest.isoformat(),
                "to": latest.isoformat() if latest else None,
                "first_segment": by_segno[first].name,
                "last_segment": by_segno[last].name,
                "backups": [b.short_id for b in usable],
            }
        )
    if by_segno:
        newest = _time_before(repo, system_id, by_segno, max(by_segno), min(by_segno), pg_bin)
        if newest is not None:
            status.newest_wal_time = newest.isoformat()
            status.rpo_exposure_seconds = round(
                ((now or datetime.now(UTC)) - newest).total_seconds(), 1
            )
    return status


def archiving_stuck_on(repo: Repository, system_id: str, seg_size: int) -> str | None:
    """The segment the cluster's archiving is stuck on (``_stuck_on``), for `status`."""
    archive = read_archive(repo.store, system_id)
    if not archive.refusals:
        return None
    lineage = production_lineage(repo, system_id, archive=archive)
    by_segno = lineage_segments(lineage, archive.files, seg_size)
    return _stuck_on(archive.refusals, lineage, by_segno, seg_size)


def _stuck_on(
    refusals: list[str], lineage: Lineage, by_segno: dict[int, WalName], seg_size: int
) -> str | None:
    """A refused segment of production's lineage with no newer segment archived after it:
    the cluster pushing it is stuck there (PostgreSQL archives in order) and, if it is
    production, its recovery point no longer moves."""
    newest = max(by_segno, default=-1)
    for key in refusals:
        name = key.rsplit("/", 1)[-1].removesuffix(REFUSED_SUFFIX).rsplit(".", 1)[0]
        parsed = parse_wal_name(name)
        if parsed is None or parsed.kind != "segment":
            continue
        segno = parsed.segno(seg_size)
        if parsed.timeline == lineage.timeline_of_segment(segno, seg_size) and segno >= newest:
            return name
    return None


def _refusal(repo: Repository, key: str) -> dict[str, Any]:
    """A refused push's record (walarchive.record_refusal)."""
    try:
        doc: dict[str, Any] = json.loads(repo.get_log_file(key))
    except (SafeholdError, ValueError) as exc:
        return {"record": key, "error": str(exc)}
    return doc | {"record": key}


def _refusal_warning(refusal: dict[str, Any]) -> str:
    name = refusal.get("name")
    if name is None:
        return f"{refusal['record']}: a record of a refused push cannot be read"
    if name.endswith(".partial"):
        after = "recovery never reads a .partial, archiving went on"
    else:
        after = (
            "PostgreSQL retries it and archives nothing after it until it is resolved: is a"
            " second cluster running with this system identifier, or is the segment damaged?"
        )
    return (
        f"a push of {name} from host {refusal.get('host')} was refused at"
        f" {refusal.get('refused_at')}: its content differs from the archived copy, which is"
        f" kept; {after}"
    )


def _lineage_name(lineage: Lineage, segno: int, seg_size: int) -> str:
    return segment_name(lineage.timeline_of_segment(segno, seg_size), segno, seg_size)


def parse_lsn_segno(snap: Snapshot) -> int:
    from safehold.sources.postgres.walnames import parse_lsn

    return parse_lsn(snap.source["stop_lsn"]) // segment_size_of(snap)


def all_statuses(repo: Repository, verify: bool = False) -> list[ClusterStatus]:
    snapshots = repo.list_snapshots()
    ids = set(list_system_ids(repo.store)) | {s.source["system_id"] for s in backups_of(snapshots)}
    return [cluster_status(repo, snapshots, sid, verify=verify) for sid in sorted(ids)]
