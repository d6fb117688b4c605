"""What each job of a policy runs: safehold commands with their environment.

The daemon runs these commands as child processes, and ``safehold plan`` shows them, so
this module is the one place that turns a policy into command lines. Every backup a job
makes carries two tags, ``service=NAME`` and ``source=SERVICE/SOURCE``: retention forgets
per service by the first, and ``safehold status`` finds a source's newest backup by the
second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safehold.dr.fields import CONTINUOUS
from safehold.dr.plan import resolve_retention
from safehold.dr.policy import Policy, Repository
from safehold.dr.policy_sources import Source
from safehold.dr.schedule import JobId

__all__ = [
    "JobCommand",
    "archiver_jobs",
    "backup_jobs_of",
    "find_source",
    "job_commands",
    "replica_after_backup",
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
    repo_name = job.target
    env = _repo_env(policy, repo_name)
    if job.action == "replicate":
        return [JobCommand(["--json", "replicate", "--to", job.schedule], env, repo_name)]
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


def replica_after_backup(policy: Policy, repository: str) -> list[str]:
    """Replica locations of ``repository`` replicated after each of its backups."""
    repo: Repository = policy.repositories[repository]
    return [r.location for r in repo.replicas if r.schedule == "after-backup"]
