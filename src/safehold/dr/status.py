"""Live protection status: each source's recovery point and RPO exposure against its
objective, each replica's lag, per service and overall.

(The data model below is shared by ``safehold status``, the daemon's metrics and its
alerts; ``evaluate`` computes it.)

A source's recovery point is the newest moment that can be restored: the time of its
newest snapshot (found by the ``source=SERVICE/SOURCE`` tag every daemon backup carries),
or, for a database with continuous log archiving, the newest transaction in the archived
logs that follow that snapshot without a gap, when that is later. A repository that cannot
be read leaves each of its sources at the last recovery point known from the daemon's
history, so that a store outage turns into an RPO breach as time passes instead of a
status that cannot be computed. docs/status.md describes every field.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from safehold.dr.fields import CONTINUOUS, format_interval
from safehold.dr.jobs import source_tag
from safehold.dr.plan import resolve_objectives
from safehold.dr.policy import Policy
from safehold.dr.policy import Repository as PolicyRepository
from safehold.dr.policy_sources import Source
from safehold.dr.schedule import JobId, next_runs
from safehold.dr.standby.config import resolve_setup
from safehold.dr.standby.status import StandbyStatus, standby_status
from safehold.errors import InvalidArgument, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = [
    "History",
    "ProtectionStatus",
    "ReplicaStatus",
    "ServiceStatus",
    "SourceStatus",
    "evaluate",
    "log_recovery_point",
    "open_policy_repository",
    "repository_password",
]

FROM_SNAPSHOT = "snapshot"
FROM_WAL = "archived WAL"
FROM_BINLOG = "archived binlog"
RECOVERY_POINT_KEY = "recovery_point:{0}"  # history state, per SERVICE/SOURCE
WAL_TIME_KEY = "newest_wal_time:{0}"  # history state, per cluster system id
BINLOG_TIME_KEY = "newest_binlog_time:{0}"  # history state, per MariaDB instance
WAL_LOOKBACK = 8  # segments without a commit record looked past (as `pg status` does)
FINAL = ("success", "partial", "failed", "interrupted", "cancelled")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _duration(name: str, value: timedelta | None) -> dict[str, Any]:
    """``name`` as text (``1h30m``) and ``name_seconds``, both None when unknown."""
    if value is None:
        return {name: None, f"{name}_seconds": None}
    return {name: format_interval(value), f"{name}_seconds": round(value.total_seconds(), 3)}


@dataclass
class SourceStatus:
    service: str
    source: str
    kind: str
    rpo: timedelta  # the objective that applies to this source (its service's)
    last_backup: datetime | None = None  # time of the newest snapshot of this source
    last_snapshot: str | None = None  # its id
    recovery_point: datetime | None = None  # the newest moment that can be restored
    recovery_point_from: str | None = None  # "snapshot", "archived WAL", "archived binlog"
    exposure: timedelta | None = None  # now - recovery_point; None: never backed up
    within_objective: bool = False
    next_run: datetime | None = None  # the soonest scheduled backup job of the source
    last_job_outcome: str | None = None  # from the daemon's job history, when there is one
    last_job_ended: datetime | None = None
    failing_since: datetime | None = None  # first failed run after the last success
    last_error: str | None = None
    problem: str | None = None  # e.g. "repository unreachable: ..." (recovery point: last known)
    last_job: str | None = None  # the name of that last job, e.g. "sync/db full"
    recovery_point_last_known: bool = False  # taken from history: the repository was unreadable
    # Never backed up, and its first backup is under way (queued or running, none finished
    # yet): not a breach until that run settles.
    pending: bool = False

    @property
    def breached(self) -> bool:
        """Outside its objective, and not merely waiting for its first backup."""
        return not self.within_objective and not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "source": self.source,
            "kind": self.kind,
            **_duration("rpo", self.rpo),
            "last_backup": _iso(self.last_backup),
            "last_snapshot": self.last_snapshot,
            "recovery_point": _iso(self.recovery_point),
            "recovery_point_from": self.recovery_point_from,
            "recovery_point_last_known": self.recovery_point_last_known,
            "pending": self.pending,
            **_duration("exposure", self.exposure),
            "within_objective": self.within_objective,
            "next_run": _iso(self.next_run),
            "last_job": self.last_job,
            "last_job_outcome": self.last_job_outcome,
            "last_job_ended": _iso(self.last_job_ended),
            "failing_since": _iso(self.failing_since),
            "last_error": self.last_error,
            "problem": self.problem,
        }


@dataclass
class ReplicaStatus:
    repository: str  # the policy's name of the primary
    location: str
    lag: timedelta | None = None  # age of the oldest point the replica cannot restore (0: none)
    newest_primary: datetime | None = None  # newest snapshot on each side
    newest_replica: datetime | None = None
    missing_objects: int | None = None
    missing: dict[str, int] = field(default_factory=dict)  # by kind: "WAL", "packs"...
    behind: dict[str, str] | None = None  # since when the replica is behind, and why
    logs: list[dict[str, object]] = field(default_factory=list)  # databases' newest points
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "location": self.location,
            **_duration("lag", self.lag),
            "newest_primary": _iso(self.newest_primary),
            "newest_replica": _iso(self.newest_replica),
            "missing_objects": self.missing_objects,
            "missing": self.missing,
            "behind": self.behind,
            "logs": self.logs,
            "problem": self.problem,
        }


@dataclass
class ServiceStatus:
    name: str
    rpo: timedelta
    rto: timedelta
    sources: list[SourceStatus] = field(default_factory=list)
    drill: dict[str, Any] | None = None  # dr/drill/status.py, for a service with drills
    drill_problem: str | None = None  # the last drill failed, or none passed within max_age
    standby: StandbyStatus | None = None  # dr/standby/status.py, for a service with a standby

    @property
    def within_objectives(self) -> bool:
        """No source breached (one whose first backup is under way is not, yet)."""
        return not any(source.breached for source in self.sources)

    @property
    def healthy(self) -> bool:
        """Within the RPO; with drills, the last one passed within max_age; with a hot
        standby, its cluster has no problem."""
        standby_ok = self.standby is None or self.standby.healthy
        return self.within_objectives and self.drill_problem is None and standby_ok

    @property
    def exposure(self) -> timedelta | None:
        """The worst exposure of its sources (None when one was never backed up)."""
        exposures = [source.exposure for source in self.sources]
        if any(e is None for e in exposures):
            return None
        return max(e for e in exposures if e is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **_duration("rpo", self.rpo),
            **_duration("rto", self.rto),
            "within_objectives": self.within_objectives,
            **_duration("exposure", self.exposure),
            "sources": [source.to_dict() for source in self.sources],
            "drill": self.drill,
            "drill_problem": self.drill_problem,
            "standby": None if self.standby is None else self.standby.to_dict(),
        }


@dataclass
class ProtectionStatus:
    now: datetime
    services: list[ServiceStatus] = field(default_factory=list)
    replicas: list[ReplicaStatus] = field(default_factory=list)

    @property
    def within_objectives(self) -> bool:
        return all(service.healthy for service in self.services)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_type": "status",
            "now": self.now.isoformat(),
            "within_objectives": self.within_objectives,
            "services": [service.to_dict() for service in self.services],
            "replicas": [replica.to_dict() for replica in self.replicas],
        }


# -- what evaluate needs of the daemon's history ----------------------------------------


class Run(Protocol):
    """One recorded job run (``service.history.JobRun``)."""

    @property
    def outcome(self) -> str: ...
    @property
    def started(self) -> datetime: ...
    @property
    def ended(self) -> datetime | None: ...
    @property
    def error(self) -> str | None: ...


class History(Protocol):
    """The part of ``service.history.JobHistory`` that status reads (dr/ sits below
    service/, so it names the shape rather than importing the class)."""

    def last(self, job: str, outcomes: tuple[str, ...] | None = None) -> Run | None: ...
    def failures_since_success(self, job: str) -> list[Any]: ...
    def get_state(self, key: str) -> Any: ...
    def put_state(self, key: str, value: Any) -> None: ...


def _remember(history: History | None, key: str, value: Any) -> None:
    """Store ``value`` when the history is writable; a read-only one (``safehold status``
    beside a running daemon) is left alone."""
    if history is None or getattr(history, "readonly", False):
        return
    with contextlib.suppress(sqlite3.OperationalError):  # opened read-only
        history.put_state(key, value)


def _recall(history: History | None, key: str) -> Any:
    return history.get_state(key) if history is not None else None


# -- opening a policy's repository ------------------------------------------------------


def repository_password(repo: PolicyRepository) -> bytes:
    """The repository's password from its file, command or environment variable."""
    kind, value = repo.password_source()
    if kind == "file":
        try:
            with open(value, "rb") as f:
                return f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise InvalidArgument(f"cannot read password file {value}: {exc.strerror}") from None
    if kind == "command":
        from safehold.sources import external

        return external.run(["/bin/sh", "-c", value], timeout=60).stdout.rstrip(b"\r\n")
    if value not in os.environ:
        raise InvalidArgument(f"environment variable {value} (password_env) is not set")
    return os.environ[value].encode()


def open_policy_repository(repo: PolicyRepository) -> Repository:
    """Open a policy repository to read: no lock (status must not block or be blocked by
    a prune), no index, and the document cache for a remote store."""
    from safehold.repo.cache import DocumentCache
    from safehold.storage import open_store

    opened = Repository.open(open_store(repo.location), repository_password(repo))
    if "://" in repo.location:
        opened.cache = DocumentCache.for_repository(opened.config.id)
    return opened


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# -- recovery points from archived logs -------------------------------------------------


def _wal_time(repo: Repository, snap: Snapshot, history: History | None) -> datetime | None:
    """The newest commit in the WAL archived without a gap after ``snap``'s start; cached in
    history per newest segment name, as reading a segment means fetching and pg_waldump."""
    from safehold.sources.postgres.catalog import segment_size_of, start_segno
    from safehold.sources.postgres.lineage import (
        lineage_segments,
        production_lineage,
        read_archive,
    )

    system_id = str(snap.source["system_id"])
    seg_size = segment_size_of(snap)
    archive = read_archive(repo.store, system_id)
    # production's timelines only: a restored copy's WAL is not this service's recovery point
    lineage = production_lineage(repo, system_id, archive=archive)
    by_segno = {n: w.name for n, w in lineage_segments(lineage, archive.files, seg_size).items()}
    first = last = start_segno(snap)
    if first not in by_segno:
        return None
    while last + 1 in by_segno:
        last += 1
    key = WAL_TIME_KEY.format(system_id)
    cached = _recall(history, key)
    if isinstance(cached, dict) and cached.get("name") == by_segno[last]:
        return datetime.fromisoformat(cached["time"]) if cached.get("time") else None
    found = _newest_commit(repo, snap, system_id, [by_segno[n] for n in range(last, first - 1, -1)])
    _remember(history, key, {"name": by_segno[last], "time": _iso(found)})
    return found


def _newest_commit(
    repo: Repository, snap: Snapshot, system_id: str, newest_first: list[str]
) -> datetime | None:
    from safehold.sources.postgres.status import last_commit_time, pg_bin_dir

    pg_bin = pg_bin_dir(int(snap.source.get("version") or 0) or None)
    for name in newest_first[:WAL_LOOKBACK]:
        try:
            found = last_commit_time(repo, system_id, name, pg_bin)
        except SafeholdError:
            continue  # unreadable: `pg status --verify` reports it
        if found is not None:
            return found
    return None


def _binlog_time(repo: Repository, snap: Snapshot, history: History | None) -> datetime | None:
    """The newest transaction in the run of consecutive binlogs archived from ``snap``'s
    binlog on; cached in history per newest binlog name."""
    from safehold.sources.mysql.binlog import (
        binlog_number,
        fetch_binlog,
        last_commit_time,
        list_binlogs,
    )

    instance = str(snap.source["instance"])
    names = list_binlogs(repo.store, instance)
    start = snap.source.get("binlog_file")
    if start:
        names = [n for n in names if binlog_number(n) >= binlog_number(str(start))]
        if not names or binlog_number(names[0]) != binlog_number(str(start)):
            return None
    if not names:
        return None
    end = 0
    while end + 1 < len(names) and binlog_number(names[end + 1]) == binlog_number(names[end]) + 1:
        end += 1
    key = BINLOG_TIME_KEY.format(instance)
    cached = _recall(history, key)
    if isinstance(cached, dict) and cached.get("name") == names[end]:
        return datetime.fromisoformat(cached["time"]) if cached.get("time") else None
    found = last_commit_time(fetch_binlog(repo, instance, names[end]))
    _remember(history, key, {"name": names[end], "time": _iso(found)})
    return found


def log_recovery_point(
    repo: Repository, source: Source, snap: Snapshot, history: History | None
) -> tuple[datetime | None, str]:
    """(time of the newest archived transaction after ``snap``, where it came from)."""
    if source.kind == "postgres" and snap.source.get("system_id") and snap.source.get("start_lsn"):
        return _wal_time(repo, snap, history), FROM_WAL
    if source.kind == "mysql" and snap.source.get("instance"):
        return _binlog_time(repo, snap, history), FROM_BINLOG
    return None, FROM_SNAPSHOT


def _wal_stuck(repo: Repository, source: Source, snap: Snapshot) -> str | None:
    """A refused WAL push that archiving has not got past (docs/postgres.md)."""
    if source.kind != "postgres" or not snap.source.get("system_id"):
        return None
    from safehold.sources.postgres.catalog import segment_size_of
    from safehold.sources.postgres.status import archiving_stuck_on

    name = archiving_stuck_on(repo, str(snap.source["system_id"]), segment_size_of(snap))
    if name is None:
        return None
    return (
        f"WAL archiving is stuck on {name}: a push of it was refused (its content differs"
        " from the archived copy); see `safehold pg status`"
    )


def _archives_logs(source: Source) -> bool:
    spec = source.effective_schedules().get("logs")
    return spec is not None and spec[0] == CONTINUOUS


# -- one source -------------------------------------------------------------------------


def _newest_tagged(snapshots: list[Snapshot], tag: str) -> Snapshot | None:
    return max(
        (s for s in snapshots if tag in s.tags), key=lambda s: (s.datetime, s.id), default=None
    )


def _fill_from_repository(
    status: SourceStatus,
    source: Source,
    repo: Repository,
    snapshots: list[Snapshot],
    history: History | None,
) -> None:
    """Recovery point from the newest tagged snapshot and, for databases, archived logs."""
    snap = _newest_tagged(snapshots, source_tag(status.service, status.source))
    if snap is None:
        return
    status.last_backup, status.last_snapshot = snap.datetime, snap.id
    status.recovery_point, status.recovery_point_from = snap.datetime, FROM_SNAPSHOT
    if _archives_logs(source):
        try:
            moment, origin = log_recovery_point(repo, source, snap, history)
            status.problem = _wal_stuck(repo, source, snap)
        except SafeholdError as exc:
            status.problem = f"archived logs unreadable: {_one_line(exc)}"
            return
        if moment is not None and moment > snap.datetime:
            status.recovery_point, status.recovery_point_from = moment, origin
    _remember(
        history,
        RECOVERY_POINT_KEY.format(f"{status.service}/{status.source}"),
        {
            "recovery_point": _iso(status.recovery_point),
            "from": status.recovery_point_from,
            "last_backup": _iso(status.last_backup),
            "snapshot": status.last_snapshot,
        },
    )


def _fill_last_known(status: SourceStatus, history: History | None, problem: str) -> None:
    """The repository could not be read: the last recovery point history knows of."""
    status.problem = problem
    known = _recall(history, RECOVERY_POINT_KEY.format(f"{status.service}/{status.source}"))
    if not isinstance(known, dict) or not known.get("recovery_point"):
        return
    status.recovery_point = datetime.fromisoformat(known["recovery_point"])
    status.recovery_point_from = known.get("from")
    status.recovery_point_last_known = True
    if known.get("last_backup"):
        status.last_backup = datetime.fromisoformat(known["last_backup"])
    status.last_snapshot = known.get("snapshot")


def _source_jobs(service: str, source: Source) -> list[str]:
    target = f"{service}/{source.name}"
    return [str(JobId("backup", target, name)) for name in source.effective_schedules()]


def _fill_from_history(status: SourceStatus, jobs: list[str], history: History) -> None:
    """The newest finished run of the source's jobs, and since when one keeps failing."""
    finished = [(run, job) for job in jobs if (run := history.last(job, FINAL)) is not None]
    if finished:
        newest, job = max(finished, key=lambda pair: pair[0].ended or pair[0].started)
        status.last_job, status.last_job_outcome = job, newest.outcome
        status.last_job_ended = newest.ended
        if newest.outcome == "failed":
            status.last_error = newest.error
    failures = [failed for job in jobs if (failed := history.failures_since_success(job))]
    if failures:
        status.failing_since = min(failed[0].started for failed in failures)
        if status.last_error is None:
            status.last_error = max(
                (failed[-1] for failed in failures), key=lambda run: run.started
            ).error


def _first_backup_running(jobs: list[str], history: History | None) -> bool:
    return history is not None and any(history.last(job, ("running",)) for job in jobs)


def _finish(status: SourceStatus, now: datetime, first_backup_under_way: bool) -> None:
    if status.recovery_point is None:
        status.pending = first_backup_under_way and status.last_job_outcome is None
        return
    status.exposure = max(timedelta(0), now - status.recovery_point)
    status.within_objective = status.exposure <= status.rpo


# -- the whole policy -------------------------------------------------------------------


@dataclass
class _Opened:
    """One repository of the policy, opened once: its snapshots, or why it cannot be read."""

    repo: Repository | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    problem: str | None = None


def _open(name: str, repo: PolicyRepository) -> _Opened:
    try:
        opened = open_policy_repository(repo)
        return _Opened(opened, opened.list_snapshots())
    except (SafeholdError, OSError) as exc:
        return _Opened(problem=f"repository {name} unreadable: {_one_line(exc)}")


def _soonest_runs(policy: Policy, now: datetime) -> dict[str, datetime]:
    """``SERVICE/SOURCE`` → its soonest cron-scheduled backup job."""
    soonest: dict[str, datetime] = {}
    for job, times in next_runs(policy, now, 1).items():
        if job.action == "backup" and times:
            known = soonest.get(job.target)
            soonest[job.target] = times[0] if known is None else min(known, times[0])
    return soonest


def _source_status(
    policy: Policy,
    service: str,
    source: Source,
    opened: _Opened,
    history: History | None,
    now: datetime,
    soonest: dict[str, datetime],
    under_way: Collection[str],
) -> SourceStatus:
    rpo = resolve_objectives(policy, service)["rpo"].value
    target = f"{service}/{source.name}"
    status = SourceStatus(service, source.name, source.kind, rpo)
    status.next_run = soonest.get(target)
    if opened.repo is None:
        _fill_last_known(status, history, opened.problem or "repository unreadable")
    else:
        _fill_from_repository(status, source, opened.repo, opened.snapshots, history)
    jobs = _source_jobs(service, source)
    if history is not None:
        _fill_from_history(status, jobs, history)
    _finish(status, now, target in under_way or _first_backup_running(jobs, history))
    return status


def _replica_statuses(
    name: str, repo: PolicyRepository, opened: _Opened, now: datetime
) -> list[ReplicaStatus]:
    return [_replica_status(name, replica.location, opened, now) for replica in repo.replicas]


def _replica_status(name: str, location: str, opened: _Opened, now: datetime) -> ReplicaStatus:
    """Lag of one replica; any error becomes its ``problem``."""
    from safehold.ops.replicate_status import replication_status
    from safehold.storage import open_store

    status = ReplicaStatus(name, location)
    if opened.repo is None:
        status.problem = opened.problem
        return status
    try:
        found = replication_status(opened.repo, open_store(location), now=now)
    except (SafeholdError, OSError) as exc:
        status.problem = f"replica unreadable: {_one_line(exc)}"
        return status
    if found.primary_newest is not None:
        status.newest_primary = found.primary_newest.moment
    if found.replica_newest is not None:
        status.newest_replica = found.replica_newest.moment
    if found.lag_seconds is not None:
        status.lag = timedelta(seconds=found.lag_seconds)
    status.missing_objects = sum(diff.count for diff in found.missing.values())
    status.missing = found.missing_by_kind()
    status.behind = found.behind.to_doc() if found.behind is not None else None
    status.logs = [db.to_doc() for db in found.logs]
    if not found.target_exists:
        status.problem = "the replica does not exist yet (never replicated)"
    return status


def _services_of(policy: Policy, repository: str) -> Iterable[str]:
    return (s for s in policy.services if policy.repository_of(s) == repository)


def evaluate(
    policy: Policy,
    now: datetime,
    history: History | None = None,
    replicas: bool = True,
    under_way: Collection[str] = (),
    state_dir: str | None = None,
    standbys: bool = True,
) -> ProtectionStatus:
    """The protection status of every service and replica of ``policy`` at ``now``.

    Each repository is opened once. ``history`` (the daemon's) adds the jobs' outcomes and
    the last known recovery points; when it is writable, the recovery points found are
    stored back into it for the next evaluation that cannot read a repository.
    ``under_way``: ``SERVICE/SOURCE`` of the backups the daemon has queued or started and
    not yet recorded (a source never backed up among them is pending, not outside).
    ``state_dir`` (the daemon's) adds each drilled service's last drills.
    ``standbys``: read each hot standby's nodes over Patroni's REST API (docs/standby.md).
    """
    if now.tzinfo is None:
        raise ValueError("evaluate needs a time-zone-aware now")
    soonest = _soonest_runs(policy, now)
    result = ProtectionStatus(now)
    services: dict[str, ServiceStatus] = {}
    for name in policy.services:
        objectives = resolve_objectives(policy, name)
        services[name] = ServiceStatus(name, objectives["rpo"].value, objectives["rto"].value)
        if state_dir is not None:
            from safehold.dr.drill.status import drill_status

            services[name].drill, services[name].drill_problem = drill_status(
                policy, name, state_dir, now
            )
        if standbys and policy.services[name].standby is not None:
            standby = services[name].standby = standby_status(resolve_setup(policy, name))
            if state_dir is not None:
                from safehold.dr.drill.status import failover_problem

                missed = failover_problem(state_dir, name)
                standby.problems += [missed] if missed else []
    for repo_name, repo in policy.repositories.items():
        serving = list(_services_of(policy, repo_name))
        if not serving and not (replicas and repo.replicas):
            continue
        opened = _open(repo_name, repo)
        for name in serving:
            for source in policy.services[name].sources:
                services[name].sources.append(
                    _source_status(policy, name, source, opened, history, now, soonest, under_way)
                )
        if replicas:
            result.replicas += _replica_statuses(repo_name, repo, opened, now)
    result.services = list(services.values())
    return result
