"""The ``[services.NAME.recovery]`` table: where each source of a service comes back, what
starts the application, and the health checks that say it is back.

The models validate one table at a time; ``recovery_problems`` checks what needs the
service's sources too (a target named after an unknown source, a key that does not fit the
source's kind, an SQL check on a source that is not a database), so that ``dr/load.py``
reports those with the file and line of the key like every other policy problem.
docs/recover.md describes every key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from safehold.dr.fields import (
    OFF,
    AbsolutePath,
    CronOrOff,
    Name,
    PolicyModel,
    PositiveInterval,
    Text,
    fail,
)

__all__ = [
    "TARGET_KEYS",
    "HealthCheck",
    "Recovery",
    "SourceTarget",
    "check_problems",
    "describe_recovery",
    "recovery_problems",
    "source_kinds",
]

Port = Annotated[int, Field(ge=1, le=65535)]

# Which keys of a source's target fit which kind of source.
TARGET_KEYS: dict[str, frozenset[str]] = {
    "files": frozenset({"paths"}),
    "postgres": frozenset({"pgdata", "port", "host"}),
    "sqlite": frozenset({"path"}),
    "redis": frozenset({"dir", "port", "host"}),
    "bucket": frozenset({"location"}),
    "command": frozenset({"command"}),
    "mysql": frozenset({"datadir", "port"}),
}


class SourceTarget(PolicyModel):
    """Where one source comes back on the recovery host (unset: where it was backed up)."""

    paths: dict[str, AbsolutePath] = Field(default_factory=dict)  # files: old path -> new
    pgdata: AbsolutePath | None = None  # postgres: the data directory
    port: Port | None = None  # postgres, redis, mysql
    datadir: AbsolutePath | None = None  # mysql: the data directory mariadbd runs on
    host: Text | None = None  # postgres: socket directory or address to connect to
    path: AbsolutePath | None = None  # sqlite: the database file
    dir: AbsolutePath | None = None  # redis: the directory of dump.rdb
    location: Text | None = None  # bucket: the bucket the objects go to
    command: Text | None = None  # command: the program that reads the stream on stdin

    @field_validator("paths")
    @classmethod
    def _absolute_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for old in value:
            if not old.startswith("/"):
                raise fail("path", f"expected absolute paths as keys, got {old!r}")
        return value


class HealthCheck(PolicyModel):
    """One check, run until it passes or its timeout ends: exactly one of ``sql`` (with
    ``source`` and ``expect``), ``http`` (an URL and the ``status`` expected), ``tcp``
    (HOST:PORT accepting a connection) or ``command`` (exits 0). ``{SOURCE.port}``,
    ``{SOURCE.host}`` and ``{SOURCE.path}`` in them are replaced by where that source
    came back, so the same checks work in a sandbox with other ports."""

    name: Text | None = None
    sql: Text | None = None
    source: Name | None = None
    database: Text = "postgres"
    user: Text = "postgres"
    expect: str | None = None
    http: Text | None = None
    status: Annotated[int, Field(ge=100, le=599)] = 200
    tcp: Text | None = None
    command: Text | None = None
    timeout: PositiveInterval = timedelta(seconds=60)

    KINDS: ClassVar[tuple[str, ...]] = ("sql", "http", "tcp", "command")

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheck:
        given = [k for k in self.KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise fail("check_kind", f"give exactly one of sql, http, tcp, command ({found})")
        if self.sql is not None and self.source is None:
            raise fail("check_source", "an sql check needs source (a PostgreSQL or MariaDB source)")
        if self.http is not None and not self.http.startswith(("http://", "https://")):
            raise fail("url", f"expected an http:// or https:// URL, got {self.http!r}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in self.KINDS if getattr(self, k) is not None)

    def label(self, index: int) -> str:
        return self.name or f"{self.kind} check {index + 1}"


class Recovery(PolicyModel):
    """``safehold recover``'s instructions for one service."""

    sources: dict[Name, SourceTarget] = Field(default_factory=dict)
    start: list[Text] = Field(default_factory=list)  # run in order once the sources are up
    checks: list[HealthCheck] = Field(default_factory=list)
    safehold_command: Text | None = None  # how the postgres user runs safehold (WAL fetch)
    timeout: PositiveInterval = timedelta(hours=1)  # for each database to finish recovery
    cuts: CronOrOff = OFF  # when the daemon records a consistent cut (dr/cuts.py)


def describe_recovery(recovery: Recovery) -> dict[str, Any]:
    """The table as ``safehold plan`` shows it: only what is set, durations as text."""
    from safehold.dr.fields import format_interval

    checks = []
    for i, check in enumerate(recovery.checks):
        doc: dict[str, Any] = {"name": check.label(i), check.kind: getattr(check, check.kind)}
        if check.kind == "sql":
            doc |= {"source": check.source, "database": check.database, "expect": check.expect}
        if check.kind == "http":
            doc["status"] = check.status
        checks.append(doc | {"timeout": format_interval(check.timeout)})
    return {
        "cuts": recovery.cuts,
        "timeout": format_interval(recovery.timeout),
        "safehold_command": recovery.safehold_command,
        "sources": {
            name: target.model_dump(exclude_defaults=True)
            for name, target in recovery.sources.items()
        },
        "start": list(recovery.start),
        "checks": checks,
    }


def recovery_problems(service: str, document: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Problems between a service's recovery table and its sources, as (key path, message)."""
    recovery = document.get("recovery")
    if not isinstance(recovery, dict):
        return []
    kinds = source_kinds(document)
    known = ", ".join(str(n) for n in kinds) or "none"
    base: tuple[Any, ...] = ("services", service, "recovery")
    problems: list[tuple[tuple[Any, ...], str]] = []
    targets = recovery.get("sources")
    for name, target in (targets if isinstance(targets, dict) else {}).items():
        if name not in kinds:
            problems.append(((*base, "sources", name), f"unknown source {name!r} ({known})"))
            continue
        allowed = TARGET_KEYS.get(str(kinds[name]), frozenset())
        for key in target if isinstance(target, dict) else {}:
            if key in SourceTarget.model_fields and key not in allowed:
                fits = ", ".join(sorted(allowed))
                problems.append(
                    (
                        (*base, "sources", name, key),
                        f"does not apply to a {kinds[name]} source (it takes {fits})",
                    )
                )
    return problems + check_problems(base, recovery.get("checks"), kinds)


def source_kinds(document: dict[str, Any]) -> dict[Any, Any]:
    """A service document's sources, name -> kind."""
    sources = document.get("sources")
    return {
        s.get("name"): s.get("kind")
        for s in (sources if isinstance(sources, list) else [])
        if isinstance(s, dict)
    }


def check_problems(
    base: tuple[Any, ...], checks: Any, kinds: dict[Any, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    """Checks naming an unknown source, or an SQL check on a source that is not a database."""
    known = ", ".join(str(n) for n in kinds) or "none"
    problems: list[tuple[tuple[Any, ...], str]] = []
    for i, check in enumerate(checks if isinstance(checks, list) else []):
        named = check.get("source") if isinstance(check, dict) else None
        if named is None:
            continue
        if named not in kinds:
            problems.append(((*base, "checks", i, "source"), f"unknown source {named!r} ({known})"))
        elif check.get("sql") is not None and kinds[named] not in ("postgres", "mysql"):
            problems.append(
                (
                    (*base, "checks", i, "source"),
                    f"an sql check needs a postgres or mysql source, not {kinds[named]}",
                )
            )
    return problems
