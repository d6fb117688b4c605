"""The recovery plan, decided before anything is written: per source, which snapshot, which
log target, which path and which port; the checks and start commands with those filled in.

The moment is resolved first: ``--to-time T`` as given; ``--latest`` as the newest moment
every source can reach: a database with archived logs reaches any moment up to its newest
archived transaction, a source of snapshots any moment after its first snapshot (as of its
newest snapshot before it), so the latest is the oldest of the databases' newest points,
or without databases the newest snapshot; a cut as the moment it recorded. Databases with archived logs then replay to that moment; every other
source takes its newest snapshot whose recovery point is not after it. A snapshot's
recovery point is when its data was read: a SQLite copy's ``copied_at``, else its start
plus its duration (a file written while the walk ran may be in it, so the end is the
honest bound). ``RecoveryPlan.to_doc`` is what ``recover --dry-run`` prints.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from safehold.dr.jobs import require_service, source_tag
from safehold.dr.policy import Policy
from safehold.dr.policy_recovery import HealthCheck, SourceTarget
from safehold.dr.policy_sources import Source
from safehold.errors import NoCopyReadable, RecoveryRefused, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, format_time, parse_time

if TYPE_CHECKING:
    from safehold.sources.postgres.catalog import RecoveryTarget

__all__ = [
    "Moment",
    "PlannedCheck",
    "RecoveryPlan",
    "SourcePlan",
    "build_plan",
    "free_port",
    "log_target_of",
    "newest_point",
    "open_readable_copy",
    "plan_checks",
    "snapshot_point",
    "tagged_snapshots",
]

LATEST = "latest"
TIME = "time"
CUT = "cut"
LOGGED_KINDS = ("postgres", "mysql")  # databases whose archived logs replay to any moment
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9][A-Za-z0-9_.-]*?)\.(port|host|path)\}")


@dataclass(frozen=True)
class Moment:
    """What the operator asked for: the latest point, a time, or a recorded cut."""

    kind: str  # LATEST, TIME or CUT
    value: str | None = None

    def text(self) -> str:
        return self.kind if self.value is None else f"{self.kind} {self.value}"


@dataclass
class SourcePlan:
    name: str
    kind: str
    snapshot_id: str
    snapshot_time: str
    point: str  # the moment this source stands for once restored
    target: str  # data directory, directory, file, bucket or command it goes to
    paths: dict[str, str] = field(default_factory=dict)  # files: snapshot path -> directory
    port: int | None = None
    host: str | None = None
    log_target: str | None = None  # "latest", "time T"; postgres "name N", mysql "position F:P"
    size: int = 0  # bytes the snapshot holds: the disk estimate
    version: int | None = None  # postgres: the server's major version
    replay_settings: dict[str, str] = field(default_factory=dict)  # postgres: replay.py

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlannedCheck:
    label: str
    kind: str  # sql, http, tcp, command
    spec: str  # the query, URL, HOST:PORT or command, placeholders filled in
    timeout: float
    source: str | None = None
    database: str = "postgres"  # a MariaDB source's checks: none (give it in the query)
    user: str = "postgres"  # a MariaDB source's checks: root (over the server's socket)
    expect: str | None = None
    status: int = 200

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecoveryPlan:
    service: str
    moment: Moment
    point: str  # the one moment every source comes back to
    repository: str  # the policy's name of it
    location: str  # the copy read: the repository or one of its replicas
    copy_note: str | None  # why a replica is read, when one is
    sources: list[SourcePlan]
    checks: list[PlannedCheck]
    start: list[str]
    newest_data: str | None  # the newest recovery point the copy holds, over the sources
    target_root: str | None = None
    safehold_command: str | None = None
    timeout: float = 3600.0
    primary: bool = False  # the recovered databases become the new primary (archive WAL)

    def source(self, name: str) -> SourcePlan:
        return next(s for s in self.sources if s.name == name)

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same recovery: resuming must never mix two of them."""
        return {
            "service": self.service,
            "point": self.point,
            "snapshots": {s.name: s.snapshot_id for s in self.sources},
            "targets": {s.name: s.target for s in self.sources},
        }

    def to_doc(self) -> dict[str, Any]:
        return {
            "message_type": "plan",
            "service": self.service,
            "moment": self.moment.text(),
            "point": self.point,
            "repository": self.repository,
            "location": self.location,
            "copy_note": self.copy_note,
            "newest_data": self.newest_data,
            "target_root": self.target_root,
            "primary": self.primary,
            "sources": [s.to_doc() for s in self.sources],
            "start": self.start,
            "checks": [c.to_doc() for c in self.checks],
        }


# -- the copy to read -------------------------------------------------------------------


def open_readable_copy(
    policy: Policy, service: str, opener: Callable[[Any], Repository]
) -> tuple[Repository, str, str | None]:
    """The service's repository, or else its first readable replica, opened with its index.

    Returns (repository, location, note); the note says why a replica is used.
    """
    name = policy.repository_of(service)
    configured = policy.repositories[name]
    locations = [configured.location, *(r.location for r in configured.replicas)]
    problems: list[str] = []
    for location in locations:
        try:
            repo = opener(configured.model_copy(update={"location": location}))
            repo.load_index()
        except (SafeholdError, OSError) as exc:
            problems.append(f"{location}: {_first_line(exc)}")
            continue
        note = None
        if problems:
            note = f"the repository cannot be read ({problems[0]}); reading its replica {location}"
        return repo, location, note
    raise NoCopyReadable(name, "; ".join(problems))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


# -- recovery points --------------------------------------------------------------------


def snapshot_point(snap: Snapshot) -> datetime:
    """When a snapshot's data was read (see the module's docstring)."""
    copied = snap.source.get("copied_at")
    if isinstance(copied, str):
        return parse_time(copied)
    if snap.source.get("kind") == "postgres" and snap.source.get("stop_time"):
        return parse_time(str(snap.source["stop_time"]))
    return snap.datetime + timedelta(seconds=float(snap.summary.get("total_duration", 0) or 0))


def tagged_snapshots(snapshots: list[Snapshot], service: str, source: Source) -> list[Snapshot]:
    """A source's snapshots (a database's base backups), oldest recovery point first."""
    tag = source_tag(service, source.name)
    found = [s for s in snapshots if tag in s.tags]
    if source.kind == "postgres":
        from safehold.sources.postgres.catalog import backups_of

        found = backups_of(found)
    return sorted(found, key=snapshot_point)


def newest_point(repo: Repository, source: Source, snaps: list[Snapshot]) -> datetime:
    """The newest moment a source can be brought back to."""
    newest = snapshot_point(snaps[-1])
    if source.kind in ("postgres", "mysql"):
        from safehold.dr.status import log_recovery_point

        moment, _ = log_recovery_point(repo, source, snaps[-1], None)
        if moment is not None and moment > newest:
            return moment
    return newest


# -- building the plan ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _under(root: str | None, path: str) -> str:
    return path if root is None else os.path.join(root, path.lstrip("/"))


def _moment_point(
    moment: Moment, newest: dict[str, datetime], logged: list[str], cut_point: datetime | None
) -> datetime:
    """The moment asked for; the latest is the oldest of the databases' newest points (a
    source of snapshots reaches any moment after its first one), or without databases the
    newest snapshot there is."""
    if moment.kind == TIME:
        assert moment.value is not None
        return parse_time(moment.value)
    if moment.kind == CUT:
        assert cut_point is not None
        return cut_point
    if logged:
        return min(newest[name] for name in logged)
    return max(newest.values())


def build_plan(
    policy: Policy,
    service: str,
    moment: Moment,
    repo: Repository,
    location: str,
    copy_note: str | None = None,
    target_root: str | None = None,
    primary: bool = False,
    cut: dict[str, Any] | None = None,
    tune_replay: bool = True,
) -> RecoveryPlan:
    """Decide every source's snapshot, log target, path and port for ``moment``; with
    ``tune_replay`` each PostgreSQL source's replay settings (``replay.py``)."""
    require_service(policy, service)
    svc = policy.services[service]
    root = os.path.abspath(target_root) if target_root else None
    snapshots = repo.list_snapshots()
    tagged: dict[str, list[Snapshot]] = {}
    newest: dict[str, datetime] = {}
    for source in svc.sources:
        tagged[source.name] = tagged_snapshots(snapshots, service, source)
        if not tagged[source.name]:
            raise RecoveryRefused(f"source {source.name} has no backup in {location}")
        newest[source.name] = newest_point(repo, source, tagged[source.name])
    cut_point = parse_time(cut["time"]) if cut is not None else None
    logged = [s.name for s in svc.sources if s.kind in LOGGED_KINDS]
    point = _moment_point(moment, newest, logged, cut_point)
    plans = []
    for source in svc.sources:
        target = svc.recovery.sources.get(source.name, SourceTarget())
        chosen = _choose(repo, source, tagged[source.name], point, newest[source.name], cut)
        plans.append(_place(source, target, chosen, root))
    if tune_replay:
        from safehold.dr.recovery.replay import available_memory, replay_settings

        for sp in plans:
            if sp.kind == "postgres":
                sp.replay_settings = replay_settings(sp.size, available_memory())
    values = _placeholders(plans, root)
    return RecoveryPlan(
        service=service,
        moment=moment,
        point=format_time(point),
        repository=policy.repository_of(service),
        location=location,
        copy_note=copy_note,
        sources=plans,
        checks=[_check(c, i, values, plans) for i, c in enumerate(svc.recovery.checks)],
        start=[_fill(command, values) for command in svc.recovery.start],
        newest_data=format_time(max(newest.values())),
        target_root=root,
        safehold_command=svc.recovery.safehold_command,
        timeout=svc.recovery.timeout.total_seconds(),
        primary=primary,
    )


@dataclass
class _Chosen:
    snap: Snapshot
    point: datetime
    log_target: str | None = None


def _choose(
    repo: Repository,
    source: Source,
    snaps: list[Snapshot],
    point: datetime,
    newest: datetime,
    cut: dict[str, Any] | None,
) -> _Chosen:
    """The snapshot (and log target) that brings ``source`` back to ``point``."""
    recorded = (cut or {}).get("sources", {}).get(source.name, {})
    if source.kind == "postgres":
        return _choose_postgres(repo, snaps, point, newest, recorded.get("restore_point"))
    if source.kind == "mysql":
        return _choose_mysql(source, snaps, point, newest, recorded.get("binlog_position"))
    if recorded.get("snapshot"):
        found = [s for s in snaps if s.id == recorded["snapshot"]]
        if not found:
            raise RecoveryRefused(
                f"snapshot {recorded['snapshot'][:8]} of the cut (source {source.name}) is gone"
            )
        return _Chosen(found[0], snapshot_point(found[0]))
    fit = [s for s in snaps if snapshot_point(s) <= point]
    if not fit:
        raise RecoveryRefused(
            f"source {source.name} has no backup at or before {format_time(point)}"
            f" (its oldest is from {format_time(snapshot_point(snaps[0]))})"
        )
    return _Chosen(fit[-1], snapshot_point(fit[-1]))


def _choose_postgres(
    repo: Repository,
    snaps: list[Snapshot],
    point: datetime,
    newest: datetime,
    restore_point: str | None,
) -> _Chosen:
    """The base backup on production's timeline lineage (sources/postgres/recovery_plan.py
    chooses it, as `pg restore` does) and the WAL target: the cut's restore point, the end
    of the archive for the newest point, else the time."""
    from safehold.sources.postgres.recovery_plan import plan_recovery

    system_id = str(snaps[-1].source["system_id"])
    if restore_point is not None:
        target, log_target, reached = (
            log_target_of(f"name {restore_point}"),
            f"name {restore_point}",
            point,
        )
    elif point >= newest:  # the newest point there is: replay every archived WAL file
        target, log_target, reached = log_target_of(LATEST), LATEST, newest
    else:
        log_target = f"time {format_time(point)}"
        target, reached = log_target_of(log_target), point
    try:
        chosen = plan_recovery(repo, target, None, system_id)
    except SafeholdError as exc:
        raise RecoveryRefused(f"PostgreSQL cannot reach {format_time(point)}: {exc}") from None
    if restore_point is not None and snapshot_point(chosen.snapshot) > point:
        raise RecoveryRefused(f"no base backup ends before the cut ({format_time(point)})")
    return _Chosen(chosen.snapshot, reached, log_target)


def _choose_mysql(
    source: Source,
    snaps: list[Snapshot],
    point: datetime,
    newest: datetime,
    position: str | None,
) -> _Chosen:
    """The newest mariabackup backup ended by ``point`` (`mysql restore` chooses the same
    way) and the binlog target: the cut's position, every archived binlog for the newest
    point, else the time."""
    from safehold.sources.mysql.physical import choose_chain

    backups = [s for s in snaps if s.source.get("kind") == "mysql"]
    try:
        chosen = choose_chain(backups, to_time=point)[-1]
    except SafeholdError as exc:
        reason = f"source {source.name} cannot reach {format_time(point)}: {exc}"
        raise RecoveryRefused(reason) from None
    if position is not None:
        return _Chosen(chosen, point, f"position {position}")
    if point >= newest:
        return _Chosen(chosen, newest, LATEST)
    return _Chosen(chosen, point, f"time {format_time(point)}")


def log_target_of(text: str) -> RecoveryTarget:
    """``latest``, ``time T`` or ``name N`` (a plan's log target) as PostgreSQL's target."""
    from safehold.sources.postgres.catalog import RecoveryTarget

    kind, _, value = text.partition(" ")
    return RecoveryTarget(
        time=value if kind == "time" else None, name=value if kind == "name" else None
    )


def _place(source: Source, target: SourceTarget, chosen: _Chosen, root: str | None) -> SourcePlan:
    """Where the source goes: the recovery table's target, else where it was; under the
    target root (with a free port) for a sandbox."""
    snap = chosen.snap
    plan = SourcePlan(
        name=source.name,
        kind=source.kind,
        snapshot_id=snap.id,
        snapshot_time=snap.time,
        point=format_time(chosen.point),
        target="",
        log_target=chosen.log_target,
        size=int(snap.summary.get("total_bytes_processed", 0) or 0),
    )
    options: Any = source.options
    if source.kind == "files":
        plan.paths = {old: _under(root, target.paths.get(old, old)) for old in options.paths}
        plan.target = ", ".join(plan.paths.values())
    elif source.kind == "postgres":
        pgdata = target.pgdata or options.pgdata
        if pgdata is None:
            raise RecoveryRefused(f"give recovery.sources.{source.name}.pgdata in the policy")
        plan.target = _under(root, pgdata)
        plan.port = free_port() if root else target.port or options.port or 5432
        plan.host = target.host or options.host or "localhost"
        plan.version = int(snap.source.get("version") or 0) or None
    elif source.kind == "mysql":
        datadir = target.datadir or snap.source.get("datadir")
        if not datadir:
            raise RecoveryRefused(f"give recovery.sources.{source.name}.datadir in the policy")
        plan.target = _under(root, str(datadir).rstrip("/") or "/")
        plan.port = free_port() if root else target.port or options.port or 3306
        plan.host = "127.0.0.1"
    elif source.kind == "sqlite":
        plan.target = _under(root, target.path or options.database)
    elif source.kind == "redis":
        if target.dir is None and root is None:
            raise RecoveryRefused(f"give recovery.sources.{source.name}.dir in the policy")
        plan.target = _under(root, target.dir or f"/redis/{source.name}")
        plan.port = free_port() if root else target.port or options.port or 6379
        plan.host = target.host or "127.0.0.1"
    elif source.kind == "bucket":  # a sandbox gets the objects as files, never a live bucket
        plan.target = (
            _under(root, f"/buckets/{source.name}") if root else target.location or options.location
        )
    elif source.kind == "command":
        if root is not None or target.command is None:
            if root is None:
                raise RecoveryRefused(f"give recovery.sources.{source.name}.command in the policy")
            plan.target = _under(root, f"/streams/{source.name}")
        else:
            plan.target = target.command
    return plan


def _placeholders(plans: list[SourcePlan], root: str | None) -> dict[tuple[str, str], str]:
    values: dict[tuple[str, str], str] = {}
    for p in plans:
        values[(p.name, "path")] = p.target
        if p.port is not None:
            values[(p.name, "port")] = str(p.port)
        if p.host is not None:
            values[(p.name, "host")] = p.host
    if root is not None:
        values[("root", "path")] = root
    return values


def _fill(text: str, values: dict[tuple[str, str], str]) -> str:
    """``{SOURCE.port}``, ``{SOURCE.host}``, ``{SOURCE.path}`` replaced; unknown ones kept."""
    return _PLACEHOLDER.sub(lambda m: values.get((m[1], m[2]), m[0]), text)


def _check(
    check: HealthCheck, index: int, values: dict[tuple[str, str], str], plans: list[SourcePlan]
) -> PlannedCheck:
    spec = getattr(check, check.kind)
    database, user = check.database, check.user
    if any(p.name == check.source and p.kind == "mysql" for p in plans):  # MariaDB's defaults
        given = check.model_fields_set
        database = database if "database" in given else ""
        user = user if "user" in given else "root"
    return PlannedCheck(
        label=check.label(index),
        kind=check.kind,
        spec=_fill(spec, values),
        timeout=check.timeout.total_seconds(),
        source=check.source,
        database=database,
        user=user,
        expect=check.expect,
        status=check.status,
    )


def plan_checks(plan: RecoveryPlan, checks: list[HealthCheck]) -> list[PlannedCheck]:
    """More checks for a plan (a drill's own), with its placeholders filled in."""
    values = _placeholders(plan.sources, plan.target_root)
    return [_check(c, len(plan.checks) + i, values, plan.sources) for i, c in enumerate(checks)]
