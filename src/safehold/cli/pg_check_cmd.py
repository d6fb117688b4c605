"""``pg check``: WAL archiving into safehold, checked end to end as PostgreSQL's OS user."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from safehold.cli.app import settings
from safehold.cli.context import Settings, parse_wait
from safehold.cli.output import print_checks
from safehold.cli.pg_cmd import DsnOpt, HostOpt, PortOpt, UserOpt, _conninfo, pg_app
from safehold.repo.repository import Repository

__all__ = ["check"]


@pg_app.command("check")
def check(
    ctx: typer.Context,
    dsn: DsnOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    timeout: Annotated[
        str,
        typer.Option("--timeout", metavar="DURATION", help="How long a switched WAL may take."),
    ] = "60s",
) -> None:
    """Check WAL archiving as pgBackRest's `check` does; run it as the database's OS user
    (e.g. `runuser -u postgres -- safehold pg check`).

    It checks that archive_mode is on and archive_command is safehold's (its program runs
    for this user, its password file is readable), that pg_waldump is found, that the
    repository opens and is writable, and that a forced WAL switch reaches the repository
    within --timeout. The repository is --repo, or else the one the archive_command names.
    Each failure is one line saying what to change; exit 1 when any check fails.
    """
    from safehold.sources.postgres.check import check_postgres

    s = settings(ctx)
    conninfo = _conninfo(dsn, host, port, user)
    findings = check_postgres(conninfo, lambda: _open(s, conninfo), parse_wait(timeout))
    if not print_checks("pg check", findings, s.json):
        raise typer.Exit(1)


def _open(s: Settings, conninfo: str) -> Repository:
    """--repo (or SAFEHOLD_REPOSITORY), else the repository of the archive_command."""
    from safehold.sources.postgres.check import repository_of

    if s.repo is None and not os.environ.get("SAFEHOLD_REPOSITORY"):
        s.repo, password_file = repository_of(conninfo)
        s.password_file = s.password_file or password_file
    return s.open_repository(load_index=False)
