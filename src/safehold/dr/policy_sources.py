"""The kinds of source a service is made of, each with its own options and schedules.

A source is a ``[[services.NAME.sources]]`` table: ``name``, ``kind``, ``options`` (a
table whose keys depend on the kind and map one to one onto the options of the safehold
command that backs it up) and ``schedules`` (names that depend on the kind too). ``argv``
turns a source and one of its schedules into that command's arguments, which is what the
daemon will run and what ``safehold plan`` shows.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from safehold.dr.fields import (
    CONTINUOUS,
    OFF,
    AbsolutePath,
    ContinuousOrCron,
    CronOrOff,
    Name,
    PolicyModel,
    Text,
    fail,
)

__all__ = [
    "KINDS",
    "BucketSource",
    "CommandSource",
    "FilesSource",
    "MysqlSource",
    "PostgresSource",
    "RedisSource",
    "Source",
    "SqliteSource",
]

HOURLY = "0 * * * *"
DAILY_FULL = "0 2 * * *"
EVERY_6_HOURS = "0 */6 * * *"
BUCKET_SCHEMES = ("s3://", "az://", "gs://")

Port = Annotated[int, Field(ge=1, le=65535)]
Tags = list[Text]


def _flags(*pairs: tuple[str, object]) -> list[str]:
    """``--flag value`` for each value given; lists repeat the flag; True gives the flag."""
    argv: list[str] = []
    for flag, value in pairs:
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv.extend((flag, str(item)))
        else:
            argv.extend((flag, str(value)))
    return argv


class _Source(PolicyModel):
    """What every kind has; subclasses add ``kind``, ``options`` and ``schedules``."""

    name: Name
    description: str | None = None

    DEFAULT_SCHEDULES: ClassVar[dict[str, str]] = {"backup": HOURLY}

    def default_schedules(self) -> dict[str, str]:
        return dict(self.DEFAULT_SCHEDULES)

    def effective_schedules(self) -> dict[str, tuple[str, str]]:
        """Each schedule name → (expression, "given" or "built-in default"); "off" dropped."""
        given: dict[str, str] = {
            name: value for name, value in self.schedules_given().items() if value is not None
        }
        result: dict[str, tuple[str, str]] = {}
        for name, default in self.default_schedules().items():
            if name not in given:
                result[name] = (default, "built-in default")
        for name, value in given.items():
            result[name] = (value, "given")
        order = list(self.DEFAULT_SCHEDULES)
        return {
            name: result[name]
            for name in sorted(result, key=lambda n: order.index(n) if n in order else 99)
            if result[name][0] != OFF
        }

    def schedules_given(self) -> dict[str, str | None]:
        schedules = getattr(self, "schedules", None)
        if schedules is None:
            return {}
        return {name: getattr(schedules, name) for name in schedules.model_fields_set}

    def argv(self, schedule: str) -> list[str] | None:
        """The safehold arguments of this schedule's job (None: nothing to start)."""
        del schedule  # kinds with one schedule run one command
        return self.backup_argv()

    def backup_argv(self) -> list[str]:
        raise NotImplementedError


# -- files ------------------------------------------------------------------------------


class FilesOptions(PolicyModel):
    paths: list[AbsolutePath] = Field(min_length=1)
    exclude: list[Text] = Field(default_factory=list)
    exclude_file: list[AbsolutePath] = Field(default_factory=list)
    exclude_caches: bool = False
    one_file_system: bool = False
    tags: Tags = Field(default_factory=list)
    host: Text | None = None


class BackupSchedule(PolicyModel):
    backup: CronOrOff | None = None


class FilesSource(_Source):
    """Directories and files: ``safehold backup PATHS``."""

    kind: Literal["files"]
    options: FilesOptions
    schedules: BackupSchedule = BackupSchedule()

    def backup_argv(self) -> list[str]:
        o = self.options
        return [
            "backup",
            *o.paths,
            *_flags(
                ("--exclude", o.exclude),
                ("--exclude-file", o.exclude_file),
                ("--exclude-caches", o.exclude_caches),
                ("--one-file-system", o.one_file_system),
                ("--tag", o.tags),
                ("--host", o.host),
            ),
        ]


# -- PostgreSQL -------------------------------------------------------------------------


class PostgresOptions(PolicyModel):
    pgdata: AbsolutePath | None = None
    method: Literal["lowlevel", "basebackup"] = "lowlevel"
    dsn: Text | None = None
    host: Text | None = None
    port: Port | None = None
    user: Text | None = None
    hostname: Text | None = None
    tags: Tags = Field(default_factory=list)
    spool: AbsolutePath | None = None
    wal_workers: Annotated[int, Field(ge=1)] = 2

    @field_validator("dsn")
    @classmethod
    def _no_password_in_dsn(cls, value: str | None) -> str | None:
        if value is not None and "password" in value.lower():
            raise fail(
                "literal_password",
                "a password must not be written in the policy: use a ~/.pgpass file or"
                " PGPASSFILE for the database password",
            )
        return value

    @model_validator(mode="after")
    def _pgdata_for_lowlevel(self) -> PostgresOptions:
        if self.method == "lowlevel" and self.pgdata is None:
            raise fail(
                "missing_pgdata",
                "pgdata is required with method 'lowlevel' (the default); use method"
                " 'basebackup' for a cluster on another host",
            )
        if self.spool is not None and self.pgdata is None:
            raise fail("missing_pgdata", "spool (asynchronous WAL archiving) needs pgdata")
        return self


class LogSchedules(PolicyModel):
    full: CronOrOff | None = None
    incremental: CronOrOff | None = None
    logs: Literal["continuous", "off"] | None = None


class PostgresSource(_Source):
    """A PostgreSQL cluster: ``pg backup --type full|incr``; WAL through archive_command, or
    ``pg wal-pusher`` when ``spool`` is set."""

    kind: Literal["postgres"]
    options: PostgresOptions
    schedules: LogSchedules = LogSchedules()

    DEFAULT_SCHEDULES: ClassVar[dict[str, str]] = {
        "full": DAILY_FULL,
        "incremental": EVERY_6_HOURS,
        "logs": CONTINUOUS,
    }

    def default_schedules(self) -> dict[str, str]:
        defaults = dict(self.DEFAULT_SCHEDULES)
        if self.options.method == "basebackup":  # pg_basebackup takes full backups only
            defaults.pop("incremental")
        return defaults

    @model_validator(mode="after")
    def _basebackup_is_full_only(self) -> PostgresSource:
        incremental = self.schedules.incremental
        if self.options.method == "basebackup" and incremental not in (None, OFF):
            raise fail(
                "basebackup_incremental",
                "method 'basebackup' takes full backups only: remove schedules.incremental"
                " or set it to 'off'",
            )
        return self

    def argv(self, schedule: str) -> list[str] | None:
        o = self.options
        conn = _flags(("--dsn", o.dsn), ("-H", o.host), ("-P", o.port), ("-U", o.user))
        if schedule == "logs":
            if o.spool is None:
                return None  # archive_command pushes each WAL file (docs/postgres.md)
            return [
                "pg",
                "wal-pusher",
                "--spool",
                o.spool,
                "--pgdata",
                o.pgdata or "",
                *_flags(("--workers", o.wal_workers)),
            ]
        kind = "full" if schedule == "full" else "incr"
        return [
            "pg",
            "backup",
            "--type",
            kind,
            "--method",
            o.method,
            *_flags(("--pgdata", o.pgdata)),
            *conn,
            *_flags(("--tag", o.tags), ("--hostname", o.hostname)),
        ]


# -- MariaDB / MySQL --------------------------------------------------------------------


class MysqlOptions(PolicyModel):
    socket: AbsolutePath | None = None
    host: Text | None = None
    port: Port | None = None
    user: Text | None = None
    defaults_file: AbsolutePath | None = None
    instance: Text | None = None
    tmpdir: AbsolutePath | None = None
    tags: Tags = Field(default_factory=list)
    binlog_interval: Annotated[int, Field(ge=1)] = 60


class MysqlLogSchedules(PolicyModel):
    full: CronOrOff | None = None
    incremental: CronOrOff | None = None
    logs: ContinuousOrCron | None = None


class MysqlSource(_Source):
    """MariaDB/MySQL: ``mysql backup --type full|incr`` (mariabackup) and binlog archiving,
    continuous (``binlog-archive --interval``) or on a cron schedule."""

    kind: Literal["mysql"]
    options: MysqlOptions
    schedules: MysqlLogSchedules = MysqlLogSchedules()

    DEFAULT_SCHEDULES: ClassVar[dict[str, str]] = {
        "full": DAILY_FULL,
        "incremental": EVERY_6_HOURS,
        "logs": CONTINUOUS,
    }

    def argv(self, schedule: str) -> list[str] | None:
        o = self.options
        conn = _flags(
            ("--socket", o.socket),
            ("--host", o.host),
            ("--port", o.port),
            ("--user", o.user),
            ("--defaults-file", o.defaults_file),
            ("--instance", o.instance),
        )
        if schedule == "logs":
            every = self.effective_schedules().get("logs", (CONTINUOUS, ""))[0]
            interval = ["--interval", str(o.binlog_interval)] if every == CONTINUOUS else []
            return ["mysql", "binlog-archive", *conn, *interval]
        kind = "full" if schedule == "full" else "incr"
        return [
            "mysql",
            "backup",
            "--type",
            kind,
            *conn,
            *_flags(("--tmpdir", o.tmpdir), ("--tag", o.tags)),
        ]


# -- SQLite, Redis, any command, a live bucket ------------------------------------------


class SqliteOptions(PolicyModel):
    database: AbsolutePath
    as_path: Text | None = None
    tmpdir: AbsolutePath | None = None
    tags: Tags = Field(default_factory=list)
    host: Text | None = None


class SqliteSource(_Source):
    """A SQLite database file, copied consistently while in use: ``sqlite backup``."""

    kind: Literal["sqlite"]
    options: SqliteOptions
    schedules: BackupSchedule = BackupSchedule()

    def backup_argv(self) -> list[str]:
        o = self.options
        return [
            "sqlite",
            "backup",
            o.database,
            *_flags(
                ("--as", o.as_path), ("--tmpdir", o.tmpdir), ("--tag", o.tags), ("--host", o.host)
            ),
        ]


class RedisOptions(PolicyModel):
    host: Text | None = None
    port: Port | None = None
    socket: AbsolutePath | None = None
    auth_file: AbsolutePath | None = None
    as_path: Text | None = None
    tags: Tags = Field(default_factory=list)


class RedisSource(_Source):
    """A Redis server's RDB: ``redis backup``."""

    kind: Literal["redis"]
    options: RedisOptions = RedisOptions()
    schedules: BackupSchedule = BackupSchedule()

    def backup_argv(self) -> list[str]:
        o = self.options
        return [
            "redis",
            "backup",
            *_flags(
                ("--host", o.host),
                ("--port", o.port),
                ("--socket", o.socket),
                ("--auth-file", o.auth_file),
                ("--as", o.as_path),
                ("--tag", o.tags),
            ),
        ]


class CommandOptions(PolicyModel):
    command: Text
    filename: Text
    tags: Tags = Field(default_factory=list)
    host: Text | None = None

    @field_validator("command")
    @classmethod
    def _parses(cls, value: str) -> str:
        from safehold.errors import InvalidArgument
        from safehold.sources.command import parse_command

        try:
            parse_command(value)
        except InvalidArgument as exc:
            raise fail("command", str(exc)) from None
        return value


class CommandSource(_Source):
    """Any program's stdout as one file: ``backup --stdin-from-command`` (e.g. mongodump)."""

    kind: Literal["command"]
    options: CommandOptions
    schedules: BackupSchedule = BackupSchedule()

    def backup_argv(self) -> list[str]:
        o = self.options
        return [
            "backup",
            "--stdin-from-command",
            o.command,
            "--stdin-filename",
            o.filename,
            *_flags(("--tag", o.tags), ("--host", o.host)),
        ]


class BucketOptions(PolicyModel):
    location: Text
    tags: Tags = Field(default_factory=list)
    host: Text | None = None

    @field_validator("location")
    @classmethod
    def _is_bucket(cls, value: str) -> str:
        if not value.startswith(BUCKET_SCHEMES):
            raise fail(
                "bucket_location",
                f"expected a bucket location (s3://, az:// or gs://BUCKET/PREFIX), got {value!r}",
            )
        return value


class BucketSource(_Source):
    """The objects of a live bucket: ``backup s3://BUCKET/PREFIX``."""

    kind: Literal["bucket"]
    options: BucketOptions
    schedules: BackupSchedule = BackupSchedule()

    def backup_argv(self) -> list[str]:
        o = self.options
        return ["backup", o.location, *_flags(("--tag", o.tags), ("--host", o.host))]


Source = Annotated[
    FilesSource
    | PostgresSource
    | MysqlSource
    | SqliteSource
    | RedisSource
    | CommandSource
    | BucketSource,
    Field(discriminator="kind"),
]
KINDS = ("files", "postgres", "mysql", "sqlite", "redis", "command", "bucket")
