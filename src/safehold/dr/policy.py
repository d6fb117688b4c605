"""The model of safehold.toml: repositories, defaults, services and their sources, daemon.

The models only describe and validate; ``dr/load.py`` reads the file and turns validation
errors into ``file:line: key: message`` lines, and ``dr/plan.py`` resolves each value
against the defaults and says where it came from. docs/policy.md describes every key.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from safehold.dr.fields import (
    CONTINUOUS,
    OFF,
    AbsolutePath,
    CronOrOff,
    EnvName,
    Interval,
    Listen,
    Name,
    PolicyModel,
    PositiveInterval,
    Text,
    describe,
    fail,
    parse_interval,
)
from safehold.dr.policy_drill import Drill
from safehold.dr.policy_http import HttpSettings
from safehold.dr.policy_recovery import Recovery
from safehold.dr.policy_sources import Source
from safehold.dr.schedule import cron_error
from safehold.dr.standby.policy import Standby
from safehold.errors import InvalidArgument
from safehold.ops.retention import Policy as RetentionPolicy
from safehold.ops.retention import parse_count, parse_duration

__all__ = [
    "AFTER_BACKUP",
    "BUILTIN_OBJECTIVES",
    "BUILTIN_RETENTION",
    "LOG_POLL",
    "AlertSettings",
    "CheckSettings",
    "DaemonSettings",
    "Defaults",
    "Objectives",
    "Policy",
    "Replica",
    "Repository",
    "Retention",
    "RetentionSettings",
    "Service",
    "Webhook",
]

AFTER_BACKUP = "after-backup"
BUILTIN_RETENTION: dict[str, Any] = {"keep_within": "30d"}
LOG_POLL = timedelta(seconds=5)  # how often a replica's `logs = "continuous"` looks for logs
BUILTIN_OBJECTIVES = {"rto": timedelta(hours=1), "rpo": timedelta(minutes=30)}


# -- repositories -----------------------------------------------------------------------


def _replica_schedule(value: Any) -> str:
    if value == AFTER_BACKUP:
        return AFTER_BACKUP
    if not isinstance(value, str) or cron_error(value.strip()) is not None:
        problem = cron_error(value.strip()) if isinstance(value, str) else None
        raise fail(
            "replica_schedule",
            f"expected '{AFTER_BACKUP}' or a cron expression" + (f": {problem}" if problem else ""),
        )
    return value.strip()


def _replica_logs(value: Any) -> str:
    expected = f"expected '{CONTINUOUS}', '{OFF}' or an interval such as '1m'"
    if value in (CONTINUOUS, OFF):
        return str(value)
    if not isinstance(value, str):
        raise fail("replica_logs", f"{expected}, got {describe(value)}")
    try:
        interval = parse_interval(value)
    except PydanticCustomError as exc:
        raise fail("replica_logs", f"{expected}: {exc.message()}") from None
    if interval < timedelta(seconds=1):
        raise fail("replica_logs", f"{expected}: {value!r} is shorter than 1s")
    return value.strip()


class Replica(PolicyModel):
    """A copy of the repository elsewhere, kept in step by ``safehold replicate``: everything
    on ``schedule``, and archived logs (WAL, binlogs) as they come, per ``logs``."""

    location: Text
    schedule: Annotated[str, BeforeValidator(_replica_schedule)] = AFTER_BACKUP
    logs: Annotated[str, BeforeValidator(_replica_logs)] = CONTINUOUS

    def log_interval(self) -> timedelta | None:
        """How often the daemon copies new logs to the replica; None: ``off`` (logs go
        with the full replication only)."""
        if self.logs == OFF:
            return None
        return LOG_POLL if self.logs == CONTINUOUS else parse_interval(self.logs)


class Repository(PolicyModel):
    """Where backups go, and where its password comes from (never the policy itself)."""

    location: Text
    password_file: Text | None = None
    password_command: Text | None = None
    password_env: EnvName | None = None
    password: object = None  # only so that the error can say why it is refused
    replicas: list[Replica] = Field(default_factory=list)

    PASSWORD_KEYS: ClassVar[tuple[str, ...]] = ("password_file", "password_command", "password_env")

    @field_validator("password", mode="before")
    @classmethod
    def _no_literal_password(cls, value: object) -> object:
        del value
        raise fail(
            "literal_password",
            "a literal password is not allowed in the policy file (it would be readable by"
            " everyone who can read the file and end up in version control): use"
            " password_file, password_command or password_env",
        )

    @model_validator(mode="after")
    def _one_password_source(self) -> Repository:
        given = [key for key in self.PASSWORD_KEYS if getattr(self, key) is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise fail(
                "password_source",
                f"give exactly one of {', '.join(self.PASSWORD_KEYS)} ({found})",
            )
        return self

    def password_source(self) -> tuple[str, str]:
        """("file" | "command" | "env", its value)."""
        for key in self.PASSWORD_KEYS:
            value = getattr(self, key)
            if value is not None:
                return key.removeprefix("password_"), value
        raise AssertionError("validated: one password source")  # pragma: no cover

    def password_environment(self) -> dict[str, str]:
        """The environment a safehold command needs to open this repository."""
        kind, value = self.password_source()
        env = {"SAFEHOLD_REPOSITORY": self.location}
        if kind == "file":
            env["SAFEHOLD_PASSWORD_FILE"] = value
        elif kind == "command":
            env["SAFEHOLD_PASSWORD_COMMAND"] = value
        elif value in os.environ:
            env["SAFEHOLD_PASSWORD"] = os.environ[value]
        return env


# -- retention and objectives -----------------------------------------------------------


def _keep_within(value: Any) -> str:
    if not isinstance(value, str):
        raise fail("duration", "expected a duration such as '30d' (units y, m, w, d, h)")
    try:
        parse_duration(value)
    except InvalidArgument as exc:
        raise fail("duration", str(exc)) from None
    return value.strip()


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail("count", "expected a number of snapshots, -1 or 'unlimited'")
    try:
        return parse_count(str(value))
    except InvalidArgument as exc:
        raise fail("count", str(exc)) from None


Count = Annotated[int, BeforeValidator(_count)]


class Retention(PolicyModel):
    """forget's rules (docs: ``safehold forget --keep-*``); a service's table overrides the
    defaults key by key."""

    keep_within: Annotated[str, BeforeValidator(_keep_within)] | None = None
    keep_last: Count | None = None
    keep_hourly: Count | None = None
    keep_daily: Count | None = None
    keep_weekly: Count | None = None
    keep_monthly: Count | None = None
    keep_yearly: Count | None = None
    keep_tag: list[Text] | None = None


class Objectives(PolicyModel):
    """Recovery time and recovery point objectives."""

    rto: PositiveInterval | None = None
    rpo: PositiveInterval | None = None


def retention_policy(values: dict[str, Any]) -> RetentionPolicy:
    """Resolved retention values (``keep_*`` keys) as forget's ``Policy``."""
    within = values.get("keep_within")
    return RetentionPolicy(
        last=values.get("keep_last") or 0,
        hourly=values.get("keep_hourly") or 0,
        daily=values.get("keep_daily") or 0,
        weekly=values.get("keep_weekly") or 0,
        monthly=values.get("keep_monthly") or 0,
        yearly=values.get("keep_yearly") or 0,
        within=parse_duration(within) if within else None,
        tags=tuple(tuple(t for t in g.split(",") if t) for g in values.get("keep_tag") or []),
    )


class Defaults(PolicyModel):
    retention: Retention = Retention()
    objectives: Objectives = Objectives()


# -- services ---------------------------------------------------------------------------


class Service(PolicyModel):
    """Sources that must come back together, e.g. a database, its uploads, its config."""

    description: str | None = None
    repository: Name | None = None
    retention: Retention = Retention()
    objectives: Objectives = Objectives()
    sources: list[Source] = Field(min_length=1)
    recovery: Recovery = Recovery()  # how `safehold recover` brings it back (docs/recover.md)
    standby: Standby | None = None  # a hot standby of its PostgreSQL (docs/standby.md)
    drill: Drill | None = None  # scheduled recovery drills (docs/drills.md)


# -- the daemon -------------------------------------------------------------------------


def _subset(value: Any) -> str:
    from safehold.ops.check import parse_subset

    if not isinstance(value, str):
        raise fail("subset", "expected 'N%' or 'n/m', e.g. '1/7'")
    try:
        parse_subset(value)
    except InvalidArgument as exc:
        raise fail("subset", str(exc)) from None
    return value.strip()


def _max_unused(value: Any) -> str:
    from safehold.ops.prune import parse_max_unused

    if not isinstance(value, str):
        raise fail("max_unused", "expected a share such as '10%'")
    try:
        parse_max_unused(value)
    except InvalidArgument as exc:
        raise fail("max_unused", str(exc).replace("--max-unused", "max_unused")) from None
    return value.strip()


class CheckSettings(PolicyModel):
    """``safehold check --read-data-subset`` on each repository; with ``n/m`` the daemon
    moves to the next of the m parts on each run, so m runs read everything."""

    schedule: CronOrOff = "0 4 * * *"
    read_data_subset: Annotated[str, BeforeValidator(_subset)] = "1/7"


class RetentionSettings(PolicyModel):
    """``forget`` with each service's retention, then ``prune``."""

    schedule: CronOrOff = "30 3 * * *"
    prune: bool = True
    max_unused: Annotated[str, BeforeValidator(_max_unused)] = "10%"


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise fail("timezone", "expected a time zone name such as 'UTC' or 'Europe/Paris'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail("timezone", f"unknown time zone {value!r}") from None
    return value


class Webhook(PolicyModel):
    """An HTTP(S) endpoint that receives each alert as a JSON POST. A URL that carries a
    token belongs in ``url_file`` or ``url_env``, not in the policy."""

    url: Text | None = None
    url_file: AbsolutePath | None = None
    url_env: EnvName | None = None
    timeout: PositiveInterval = timedelta(seconds=10)

    @model_validator(mode="after")
    def _one_url(self) -> Webhook:
        given = [k for k in ("url", "url_file", "url_env") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise fail("url_source", f"give exactly one of url, url_file, url_env ({found})")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise fail("url", f"expected an http:// or https:// URL, got {self.url!r}")
        return self


class AlertSettings(PolicyModel):
    """Where alerts go: webhooks, and apprise's own configuration file (email, chat...),
    which keeps the credentials of those services out of the policy."""

    webhooks: list[Webhook] = Field(default_factory=list)
    apprise_config: AbsolutePath | None = None


class DaemonSettings(HttpSettings):  # http* keys: dr/policy_http.py
    concurrency: Annotated[int, Field(ge=1)] = 2
    jitter: Interval = timedelta(0)
    timezone: Annotated[str, BeforeValidator(_timezone)] = "UTC"
    state_dir: AbsolutePath | None = None  # job history, alert state; see service/paths.py
    metrics: Listen = "127.0.0.1:9464"
    status_interval: PositiveInterval = timedelta(minutes=1)
    retries: Annotated[int, Field(ge=0)] = 3
    retry_delay: PositiveInterval = timedelta(minutes=1)
    stop_grace: Interval = timedelta(minutes=1)  # how long a stop waits for running jobs
    job_timeout: PositiveInterval | None = None  # a job still running then is cut
    check: CheckSettings = CheckSettings()
    retention: RetentionSettings = RetentionSettings()
    alerts: AlertSettings = AlertSettings()


# -- the whole file ---------------------------------------------------------------------


class Policy(PolicyModel):
    """A validated safehold.toml."""

    repositories: dict[Name, Repository] = Field(min_length=1)
    defaults: Defaults = Defaults()
    services: dict[Name, Service] = Field(min_length=1)
    daemon: DaemonSettings = DaemonSettings()

    def repository_of(self, service: str) -> str:
        """The repository a service backs up to (its own, or the only one there is)."""
        named = self.services[service].repository
        return named if named is not None else next(iter(self.repositories))
