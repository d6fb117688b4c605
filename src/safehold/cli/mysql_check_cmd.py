"""``mysql check``: binlog archiving into safehold, checked end to end."""

from __future__ import annotations

import typer

from safehold.cli.app import settings
from safehold.cli.mysql_cmd import (
    DefaultsOpt,
    HostOpt,
    InstanceOpt,
    PortOpt,
    SocketOpt,
    UserOpt,
    _conn,
    mysql_app,
)
from safehold.cli.output import print_checks

__all__ = ["check"]


@mysql_app.command("check")
def check(
    ctx: typer.Context,
    socket: SocketOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    defaults_file: DefaultsOpt = None,
    instance: InstanceOpt = None,
) -> None:
    """Check binlog archiving as `pg check` checks WAL archiving; run it as the user that
    runs `mysql binlog-archive` (e.g. `runuser -u mysql -- safehold mysql check`).

    It checks that the server writes binlogs, that their files are readable by this user,
    that mariadb-binlog is found, that the repository opens and is writable, and that a
    forced log switch (FLUSH BINARY LOGS, then an archiving round) stores the closed log
    in the repository. Each failure is one line saying what to change; exit 1 when any
    check fails.
    """
    from safehold.sources.mysql.check import check_mysql

    s = settings(ctx)
    conn = _conn(socket, host, port, user, defaults_file)
    findings = check_mysql(conn, lambda: s.open_repository(load_index=False), instance)
    if not print_checks("mysql check", findings, s.json):
        raise typer.Exit(1)
