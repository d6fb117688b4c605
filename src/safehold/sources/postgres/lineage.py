"""Which timeline history is the protected cluster's: the production lineage.

A restored copy that is promoted starts a new timeline. If it archived into the
repository, PostgreSQL's ``recovery_target_timeline = 'latest'`` would follow the copy's
timeline in every later restore (the highest one wins), and status would report the copy's
commits as production's. So the repository records which timeline is production's:

- every base backup records the timeline of the live cluster it was taken from;
- a cluster made the new primary (``pg restore --promote-as-primary``, whose
  archive_command is ``pg wal-push --primary``) claims the timeline it creates when it
  archives that timeline's ``.history`` file: an object ``wal/<system id>/TTTTTTTT.lineage``
  (docs/FORMAT.md §13).

Production's timeline is the highest one recorded either way; its lineage is that
timeline and its ancestors as its history file lists them. WAL of any other timeline stays
archived (PostgreSQL probes history files to pick a new timeline id) but is kept apart:
restores, status and recovery points never follow it unless asked (``--timeline``).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field

from safehold.errors import NotFound
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.postgres.catalog import backups_of
from safehold.sources.postgres.walarchive import PREFIX, REFUSED_SUFFIX, WalMissing, fetch_wal
from safehold.sources.postgres.walnames import WalName, parse_lsn, parse_wal_name
from safehold.storage.base import ObjectStore

__all__ = [
    "CLAIM_SUFFIX",
    "Lineage",
    "WalArchive",
    "claim_timeline",
    "lineage_of",
    "lineage_segments",
    "parse_history",
    "production_lineage",
    "read_archive",
    "timeline_to_claim",
]

CLAIM_SUFFIX = ".lineage"


@dataclass(frozen=True)
class Lineage:
    """A timeline and the ancestors it branched from: ``(timeline, begin LSN)``, oldest first.

    ``claimed`` says whether it is production's by record (a base backup or a claim) or
    only by default (nothing recorded yet). ``others`` are archived timelines not on it.
    """

    system_id: str
    timeline: int
    steps: tuple[tuple[int, int], ...]
    claimed: bool = True
    others: tuple[int, ...] = ()

    @property
    def timelines(self) -> list[int]:
        return [tli for tli, _ in self.steps]

    def timeline_at(self, lsn: int) -> int:
        """The timeline that holds ``lsn`` on this lineage."""
        found = self.steps[0][0]
        for tli, begin in self.steps:
            if begin <= lsn:
                found = tli
        return found

    def timeline_of_segment(self, segno: int, segment_size: int) -> int:
        """The timeline whose copy of segment ``segno`` recovery reads (the newest that
        begins at or before that segment, as PostgreSQL's XLogFileReadAnyTLI does)."""
        found = self.steps[0][0]
        for tli, begin in self.steps:
            if begin // segment_size <= segno:
                found = tli
        return found

    def holds(self, backup: Snapshot) -> bool:
        """Whether a base backup was taken on this lineage (recovery can start from it)."""
        tli = int(backup.source.get("timeline") or 1)
        return (
            tli in self.timelines and self.timeline_at(parse_lsn(backup.source["start_lsn"])) == tli
        )

    def describe(self) -> str:
        return " -> ".join(str(t) for t in self.timelines)


def parse_history(text: str) -> list[tuple[int, int]]:
    """A ``TTTTTTTT.history`` file's entries: ``(parent timeline, LSN where it ended)``."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 2:
            continue
        entries.append((int(fields[0]), parse_lsn(fields[1])))
    return entries


def lineage_of(repo: Repository, system_id: str, timeline: int, claimed: bool = True) -> Lineage:
    """The lineage that ends in ``timeline``, from its archived history file."""
    steps: list[tuple[int, int]] = []
    if timeline > 1:
        try:
            history = fetch_wal(repo, system_id, f"{timeline:08X}.history").decode()
        except WalMissing:
            history = ""  # recovery could not cross into it either; status shows the gap
        begin = 0
        for parent, end in parse_history(history):
            steps.append((parent, begin))
            begin = end
        steps.append((timeline, begin))
    else:
        steps.append((timeline, 0))
    return Lineage(system_id, timeline, tuple(steps), claimed)


def claim_key(system_id: str, timeline: int) -> str:
    return f"{PREFIX}{system_id}/{timeline:08X}{CLAIM_SUFFIX}"


def claim_timeline(repo: Repository, system_id: str, timeline: int) -> bool:
    """Record ``timeline`` as production's (once; False if it was already recorded)."""
    doc = json.dumps({"system_id": system_id, "timeline": timeline}, sort_keys=True)
    return repo.put_log_file(claim_key(system_id, timeline), doc.encode())


def timeline_to_claim(pgdata: str, name: str) -> int | None:
    """The timeline a primary's push of ``name`` claims: a history file's, unless the
    cluster is a standby (``standby.signal``) re-archiving what it received under
    ``archive_mode = always``: only the node promoted creates a timeline."""
    parsed = parse_wal_name(name)
    if parsed is None or parsed.kind != "history":
        return None
    if os.path.exists(os.path.join(pgdata, "standby.signal")):
        return None
    return parsed.timeline


@dataclass(frozen=True)
class WalArchive:
    """One listing of a cluster's ``wal/<system id>/``: its WAL files, timeline claims and
    the keys of refused pushes (walarchive.py)."""

    files: list[WalName]
    claims: list[int]
    refusals: list[str] = field(default_factory=list)


def read_archive(store: ObjectStore, system_id: str) -> WalArchive:
    files, claims, refusals = [], [], []
    for info in store.list(f"{PREFIX}{system_id}/"):
        name = info.key.rsplit("/", 1)[-1]
        if name.endswith(CLAIM_SUFFIX):
            with contextlib.suppress(ValueError):
                claims.append(int(name.removesuffix(CLAIM_SUFFIX), 16))
        elif name.endswith(REFUSED_SUFFIX):
            refusals.append(info.key)
        elif (parsed := parse_wal_name(name)) is not None:
            files.append(parsed)
    return WalArchive(files, sorted(claims), sorted(refusals))


def production_lineage(
    repo: Repository,
    system_id: str,
    snapshots: list[Snapshot] | None = None,
    archive: WalArchive | None = None,
) -> Lineage:
    """Production's lineage: the highest timeline recorded by a base backup or a claim.

    With nothing recorded (WAL archived before the first base backup), the lowest archived
    timeline: the one the cluster started on, never a branch made later.
    """
    if archive is None:
        archive = read_archive(repo.store, system_id)
    if snapshots is None:
        try:
            snapshots = repo.list_snapshots()
        except NotFound:
            snapshots = []
    recorded = [int(b.source.get("timeline") or 1) for b in backups_of(snapshots, system_id)]
    recorded += archive.claims
    archived = sorted({w.timeline for w in archive.files})
    if recorded:
        lineage = lineage_of(repo, system_id, max(recorded))
    else:
        lineage = lineage_of(repo, system_id, archived[0] if archived else 1, claimed=False)
    others = tuple(t for t in archived if t not in lineage.timelines)
    return Lineage(lineage.system_id, lineage.timeline, lineage.steps, lineage.claimed, others)


def lineage_segments(
    lineage: Lineage, files: list[WalName], segment_size: int
) -> dict[int, WalName]:
    """The archived full segments recovery along ``lineage`` reads, by segment number."""
    found: dict[int, WalName] = {}
    for w in files:
        if w.kind != "segment":
            continue
        segno = w.segno(segment_size)
        if w.timeline == lineage.timeline_of_segment(segno, segment_size):
            found[segno] = w
    return found
