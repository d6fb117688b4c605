"""The plan: every effective value of a policy, where it came from, and when each job runs.

Values resolve from the most specific level to the least, as kopia's policy tree does:
the service's own table, then ``[defaults]``, then safehold's built-in default; each
resolved value records its origin (``service sync``, ``defaults``, ``built-in default``,
``daemon``). ``plan_document`` is what ``safehold plan --json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from safehold.dr.fields import format_interval
from safehold.dr.policy import (
    BUILTIN_OBJECTIVES,
    BUILTIN_RETENTION,
    Objectives,
    Policy,
    Replica,
    Retention,
)
from safehold.dr.policy_drill import describe_drill
from safehold.dr.policy_recovery import describe_recovery
from safehold.dr.policy_sources import Source
from safehold.dr.schedule import LOG_REPLICATION, JobId, next_runs
from safehold.dr.standby.policy import Standby, standby_doc

__all__ = [
    "BUILTIN",
    "DEFAULTS",
    "Plan",
    "PlannedReplica",
    "PlannedSchedule",
    "PlannedSource",
    "Setting",
    "build_plan",
    "plan_document",
    "resolve_objectives",
    "resolve_retention",
]

BUILTIN = "built-in default"
DEFAULTS = "defaults"
DAEMON = "daemon"


@dataclass(frozen=True)
class Setting:
    """One effective value and the level of the policy that set it."""

    value: Any
    origin: str

    def text(self) -> str:
        if isinstance(self.value, timedelta):
            return format_interval(self.value)
        if isinstance(self.value, list):
            return ", ".join(map(str, self.value))
        return str(self.value)

    def to_doc(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, timedelta):
            return {
                "value": format_interval(value),
                "seconds": int(value.total_seconds()),
                "origin": self.origin,
            }
        return {"value": value, "origin": self.origin}


@dataclass(frozen=True)
class PlannedSchedule:
    name: str
    spec: str  # a cron expression, "continuous", or "after-backup"
    origin: str
    next: list[datetime]
    argv: list[str] | None  # the safehold command of the job; None when nothing is started
    note: str | None = None  # what happens, when it is not one command


@dataclass(frozen=True)
class PlannedSource:
    service: str
    name: str
    kind: str
    options: dict[str, Setting]
    schedules: list[PlannedSchedule]
    retention: dict[str, Setting]
    objectives: dict[str, Setting]


@dataclass(frozen=True)
class PlannedService:
    name: str
    repository: Setting
    retention: dict[str, Setting]
    objectives: dict[str, Setting]
    sources: list[PlannedSource]
    recovery: dict[str, Any] = field(default_factory=dict)  # policy_recovery.describe_recovery
    standby: Standby | None = None
    drill: dict[str, Any] | None = None  # policy_drill.describe_drill


@dataclass(frozen=True)
class PlannedReplica:
    location: str
    schedule: PlannedSchedule  # the full replication
    logs: PlannedSchedule  # archived logs between full replications


@dataclass(frozen=True)
class PlannedRepository:
    name: str
    location: str
    password_source: tuple[str, str]
    replicas: list[PlannedReplica]
    check: PlannedSchedule
    retention: PlannedSchedule


@dataclass(frozen=True)
class Plan:
    now: datetime
    timezone: str
    repositories: list[PlannedRepository]
    services: list[PlannedService]
    daemon: dict[str, Setting]


def _service_origin(service: str) -> str:
    return f"service {service}"


def resolve_retention(policy: Policy, service: str) -> dict[str, Setting]:
    """Each retention key: the service's value, else the defaults', else the built-in one.

    Keys set nowhere are left out (the rule is off)."""
    return _resolve(
        policy.services[service].retention,
        policy.defaults.retention,
        BUILTIN_RETENTION,
        _service_origin(service),
        Retention.model_fields,
    )


def resolve_objectives(policy: Policy, service: str) -> dict[str, Setting]:
    return _resolve(
        policy.services[service].objectives,
        policy.defaults.objectives,
        BUILTIN_OBJECTIVES,
        _service_origin(service),
        Objectives.model_fields,
    )


def _resolve(
    own: Retention | Objectives,
    defaults: Retention | Objectives,
    builtin: dict[str, Any],
    own_origin: str,
    keys: dict[str, Any],
) -> dict[str, Setting]:
    result: dict[str, Setting] = {}
    for key in keys:
        if key in own.model_fields_set:
            result[key] = Setting(getattr(own, key), own_origin)
        elif key in defaults.model_fields_set:
            result[key] = Setting(getattr(defaults, key), DEFAULTS)
        elif key in builtin:
            result[key] = Setting(builtin[key], BUILTIN)
    return result


def _options(source: Source, origin: str) -> dict[str, Setting]:
    """The source's options that have a value, given ones and built-in defaults alike."""
    given = source.options.model_fields_set
    result: dict[str, Setting] = {}
    for key in type(source.options).model_fields:
        value = getattr(source.options, key)
        if value is None or value == [] or (value is False and key not in given):
            continue
        result[key] = Setting(value, origin if key in given else BUILTIN)
    return result


def build_plan(policy: Policy, now: datetime, count: int) -> Plan:
    """Resolve ``policy`` and compute the next ``count`` run times of every job after ``now``."""
    runs = next_runs(policy, now, count)
    services = [_plan_service(policy, name, runs) for name in policy.services]
    repositories = [_plan_repository(policy, name, runs) for name in policy.repositories]
    daemon = policy.daemon
    given = daemon.model_fields_set
    settings = {
        key: Setting(getattr(daemon, key), DAEMON if key in given else BUILTIN)
        for key in ("concurrency", "jitter", "timezone")
    }
    return Plan(now, daemon.timezone, repositories, services, settings)


def _plan_service(policy: Policy, name: str, runs: dict[JobId, list[datetime]]) -> PlannedService:
    service = policy.services[name]
    origin = _service_origin(name)
    if service.repository is not None:
        repository = Setting(service.repository, origin)
    else:
        repository = Setting(policy.repository_of(name), f"{BUILTIN} (the only repository)")
    retention = resolve_retention(policy, name)
    objectives = resolve_objectives(policy, name)
    sources = []
    for source in service.sources:
        schedules = [
            PlannedSchedule(
                schedule,
                spec,
                origin if where == "given" else BUILTIN,
                runs.get(JobId("backup", f"{name}/{source.name}", schedule), []),
                _daemon_argv(policy, JobId("backup", f"{name}/{source.name}", schedule)),
                _note(source, schedule),
            )
            for schedule, (spec, where) in source.effective_schedules().items()
        ]
        sources.append(
            PlannedSource(
                name,
                source.name,
                source.kind,
                _options(source, origin),
                schedules,
                retention,
                objectives,
            )
        )
    recovery = describe_recovery(service.recovery)
    drill = describe_drill(service.drill) if service.drill is not None else None
    return PlannedService(
        name, repository, retention, objectives, sources, recovery, service.standby, drill
    )


def _daemon_argv(policy: Policy, job: JobId) -> list[str] | None:
    """The command the daemon runs for ``job`` (without its ``--json``), or None."""
    from safehold.dr.jobs import job_commands

    commands = job_commands(policy, job)
    if not commands:
        return None
    argv = commands[0].argv
    return argv[1:] if argv[:1] == ["--json"] else argv


def _note(source: Source, schedule: str) -> str | None:
    if source.kind == "postgres" and schedule == "logs" and source.argv(schedule) is None:
        return "PostgreSQL's archive_command pushes each WAL file (docs/postgres.md)"
    return None


def _plan_repository(
    policy: Policy, name: str, runs: dict[JobId, list[datetime]]
) -> PlannedRepository:
    repo = policy.repositories[name]
    replicas = []
    for replica in repo.replicas:
        origin = f"repository {name}" if "schedule" in replica.model_fields_set else BUILTIN
        job = JobId("replicate", name, replica.location)
        argv = ["replicate", "--to", replica.location]
        full = PlannedSchedule("replicate", replica.schedule, origin, runs.get(job, []), argv)
        replicas.append(
            PlannedReplica(replica.location, full, _plan_log_replication(policy, name, replica))
        )
    daemon = policy.daemon
    check = PlannedSchedule(
        "check",
        daemon.check.schedule,
        DAEMON if "schedule" in daemon.check.model_fields_set else BUILTIN,
        runs.get(JobId("check", name, "check"), []),
        ["check", "--read-data-subset", daemon.check.read_data_subset],
    )
    prune = f", then prune (max_unused {daemon.retention.max_unused})"
    retention = PlannedSchedule(
        "retention",
        daemon.retention.schedule,
        DAEMON if "schedule" in daemon.retention.model_fields_set else BUILTIN,
        runs.get(JobId("retention", name, "retention"), []),
        None,
        "forget with each service's retention" + (prune if daemon.retention.prune else ""),
    )
    return PlannedRepository(
        name, repo.location, repo.password_source(), replicas, check, retention
    )


def _plan_log_replication(policy: Policy, name: str, replica: Replica) -> PlannedSchedule:
    """What carries archived logs to ``replica`` between full replications, and why."""
    from safehold.dr.jobs import archives_logs, log_replication_argv

    origin = f"repository {name}" if "logs" in replica.model_fields_set else BUILTIN
    interval = replica.log_interval()
    if interval is None:
        note = "logs reach the replica with each full replication only"
        return PlannedSchedule("logs", replica.logs, origin, [], None, note)
    if not archives_logs(policy, name):
        note = "no source of this repository archives logs: nothing to follow"
        return PlannedSchedule("logs", replica.logs, origin, [], None, note)
    argv = log_replication_argv(policy, JobId(LOG_REPLICATION, name, replica.location))
    note = f"the daemon copies new WAL and binlogs every {format_interval(interval)}"
    return PlannedSchedule("logs", replica.logs, origin, [], argv, note)


# -- the JSON document ------------------------------------------------------------------


def _schedule_doc(s: PlannedSchedule) -> dict[str, Any]:
    return {
        "name": s.name,
        "schedule": s.spec,
        "origin": s.origin,
        "next": [t.isoformat() for t in s.next],
        "command": s.argv,
        "note": s.note,
    }


def _settings_doc(settings: dict[str, Setting]) -> dict[str, Any]:
    return {key: setting.to_doc() for key, setting in settings.items()}


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as one JSON-ready document."""
    return {
        "message_type": "plan",
        "now": plan.now.isoformat(),
        "timezone": plan.timezone,
        "daemon": _settings_doc(plan.daemon),
        "repositories": [
            {
                "name": r.name,
                "location": r.location,
                "password": {"from": r.password_source[0], "value": r.password_source[1]},
                "replicas": [
                    {
                        "location": x.location,
                        **_schedule_doc(x.schedule),
                        "logs": _schedule_doc(x.logs),
                    }
                    for x in r.replicas
                ],
                "check": _schedule_doc(r.check),
                "retention": _schedule_doc(r.retention),
            }
            for r in plan.repositories
        ],
        "services": [
            {
                "name": s.name,
                "repository": s.repository.to_doc(),
                "retention": _settings_doc(s.retention),
                "objectives": _settings_doc(s.objectives),
                "recovery": s.recovery,
                "sources": [
                    {
                        "name": src.name,
                        "kind": src.kind,
                        "options": _settings_doc(src.options),
                        "schedules": [_schedule_doc(x) for x in src.schedules],
                        "retention": _settings_doc(src.retention),
                        "objectives": _settings_doc(src.objectives),
                    }
                    for src in s.sources
                ],
                "standby": standby_doc(s.standby, s.name) if s.standby else None,
                "drill": s.drill,
            }
            for s in plan.services
        ],
    }
