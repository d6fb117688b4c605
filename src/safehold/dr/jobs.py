"""What each job of a policy runs: safehold commands with their environment.

The daemon runs these commands as child processes, and ``safehold plan`` shows them, so
this module is the one place that turns a policy into command lines. Every backup a job
makes carries two tags, ``service=NAME`` and ``source=SERVICE/SOURCE``: retention forgets
per service by the first, and ``safehold status`` finds a source's newest backup by the
second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safehold.dr.fields import CONTINUOUS, format_interval
from safehold.dr.plan import resolve_retention
from safehold.dr.policy import Policy, Repository
from safehold.dr.policy_sources import Source
from safehold.dr.schedule import LOG_REPLICATION, JobId
from safehold.dr.standby.config import standby_source

__all__ = [
    "JobCommand",
    "archiver_jobs",
    "archives_logs",
    "backup_jobs_of",
    "find_source",
    "job_commands",
    "log_replication_argv",
    "log_replication_jobs",
    "replica_after_backup",
    "require_service",
    "service_tag",
    "source_tag",
]


def service_tag(service: str) -> str:
    return f"service={service}"


def source_tag(service: str, source: str) -> str:
    return f"source={service}/{source}"


@dataclass(frozen=True)
class JobCommand:
    """One safehold command line (without the program name) and its extra environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    repository: str = ""  # the policy's name of the repository it works on
    low_priority: bool = False  # run under nice and ionice (drills)


def require_service(policy: Policy, service: str) -> None:
    """Fail with one line naming the services there are when ``service`` is not one."""
    if service not in policy.services:
        from safehold.errors import InvalidArgument

        known = ", ".join(policy.services)
        raise InvalidArgument(f"unknown service {service!r} (the policy defines: {known})")


def find_source(policy: Policy, target: str) -> tuple[str, Source]:
    """``SERVICE/SOURCE`` → (service name, source)."""
    service_name, _, source_name = target.partition("/")
    for source in policy.services[service_name].sources:
        if source.name == source_name:
            return service_name, source
    raise KeyError(target)


def _repo_env(policy: Policy, name: str) -> dict[str, str]:
    return policy.repositories[name].password_environment()


def _backup(policy: Policy, job: JobId) -> list[JobCommand]:
    service, source = find_source(policy, job.target)
    argv = source.argv(job.schedule)
    if argv is None:
        return []
    repo = policy.repository_of(service)
    env = _repo_env(policy, repo)
    is_archiver = job.schedule == "logs"
    if not is_archiver:
        argv = [*argv, "--tag", service_tag(service), "--tag", source_tag(service, source.name)]
        if standby_source(policy, service) == source.name:  # whichever node is primary now
            argv += ["--standby", service]
    return [JobCommand(["--json", *argv], env, repo)]


def _retention(policy: Policy, repo_name: str) -> list[JobCommand]:
    """forget for each service of the repository with its own retention, then prune."""
    env = _repo_env(policy, repo_name)
    commands = []
    for service in policy.services:
        if policy.repository_of(service) != repo_name:
            continue
        flags: list[str] = []
        for key, setting in resolve_retention(policy, service).items():
            values = setting.value if isinstance(setting.value, list) else [setting.value]
            for value in values:
                flags += [f"--{key.replace('_', '-')}", str(value)]
        commands.append(
            JobCommand(["--json", "forget", "--tag", service_tag(service), *flags], env, repo_name)
        )
    settings = policy.daemon.retention
    if settings.prune:
        commands.append(
            JobCommand(["--json", "prune", "--max-unused", settings.max_unused], env, repo_name)
        )
    return commands


def job_commands(policy: Policy, job: JobId, check_part: str | None = None) -> list[JobCommand]:
    """The commands of ``job``, run one after the other; empty when nothing is to start
    (e.g. PostgreSQL WAL pushed by archive_command). ``check_part`` (``n/m``) replaces the
    policy's ``read_data_subset`` for the daemon's rotating check."""
    if job.action == "backup":
        return _backup(policy, job)
    if job.action == "cut":  # the policy comes from SAFEHOLD_CONFIG, which the daemon sets
        repo = policy.repository_of(job.target)
        return [JobCommand(["--json", "cut", job.target], _repo_env(policy, repo), repo)]
    if job.action == "drill":  # at low CPU and I/O priority (the daemon's runner)
        repo, drill = policy.repository_of(job.target), policy.services[job.target].drill
        point = drill.point if drill is not None else "random"
        argv = ["--json", "drill", job.target, "--point", point]
        return [JobCommand(argv, _repo_env(policy, repo), repo, low_priority=True)]
    repo_name = job.target
    env = _repo_env(policy, repo_name)
    if job.action == "replicate":
        return [JobCommand(["--json", "replicate", "--to", job.schedule], env, repo_name)]
    if job.action == LOG_REPLICATION:
        return [JobCommand(["--json", *log_replication_argv(policy, job)], env, repo_name)]
    if job.action == "check":
        subset = check_part or policy.daemon.check.read_data_subset
        return [JobCommand(["--json", "check", "--read-data-subset", subset], env, repo_name)]
    if job.action == "retention":
        return _retention(policy, repo_name)
    raise ValueError(f"unknown job action {job.action!r}")


def backup_jobs_of(policy: Policy, repository: str) -> list[str]:
    """``SERVICE/SOURCE`` of every source that backs up into ``repository``."""
    return [
        f"{service}/{source.name}"
        for service in policy.services
        if policy.repository_of(service) == repository
        for source in policy.services[service].sources
    ]


def archiver_jobs(policy: Policy) -> list[JobId]:
    """The continuous log archivers the daemon keeps running (one per database source)."""
    jobs = []
    for service, svc in policy.services.items():
        for source in svc.sources:
            spec = source.effective_schedules().get("logs")
            if spec is not None and spec[0] == CONTINUOUS and source.argv("logs") is not None:
                jobs.append(JobId("backup", f"{service}/{source.name}", "logs"))
    return jobs


def archives_logs(policy: Policy, repository: str) -> bool:
    """Whether a source backing up into ``repository`` archives logs (WAL, binlogs)."""
    return any(
        "logs" in source.effective_schedules()
        for service in policy.services
        if policy.repository_of(service) == repository
        for source in policy.services[service].sources
    )


def log_replication_jobs(policy: Policy) -> list[JobId]:
    """The log followers the daemon keeps running: one per replica whose ``logs`` is not
    off, of a repository that receives archived logs."""
    return [
        JobId(LOG_REPLICATION, name, replica.location)
        for name, repo in policy.repositories.items()
        if archives_logs(policy, name)
        for replica in repo.replicas
        if replica.log_interval() is not None
    ]


def log_replication_argv(policy: Policy, job: JobId) -> list[str]:
    """``replicate --to LOCATION --logs-only --follow INTERVAL`` for a log follower."""
    replica = next(
        r for r in policy.repositories[job.target].replicas if r.location == job.schedule
    )
    interval = replica.log_interval()
    assert interval is not None, "no log follower for logs = off"
    every = format_interval(interval)
    return ["replicate", "--to", replica.location, "--logs-only", "--follow", every]


def replica_after_backup(policy: Policy, repository: str) -> list[str]:
    """Replica locations of ``repository`` replicated after each of its backups."""
    repo: Repository = policy.repositories[repository]
    return [r.location for r in repo.replicas if r.schedule == "after-backup"]
