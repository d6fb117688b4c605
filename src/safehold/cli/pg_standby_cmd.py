"""``pg standby create``: a streaming standby restored from the repository."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from safehold.cli.app import settings
from safehold.cli.output import ErrorPrinter, out, print_json
from safehold.cli.pg_cmd import _default_safehold_command, pg_app
from safehold.errors import InvalidArgument

__all__ = ["pg_standby_app"]

pg_standby_app = typer.Typer(help="Streaming standbys built from the repository.")
pg_app.add_typer(pg_standby_app, name="standby")


@pg_standby_app.command("create")
def create(
    ctx: typer.Context,
    pgdata: Annotated[
        str | None, typer.Option("--pgdata", "-D", help="The standby's data directory (new).")
    ] = None,
    primary_conninfo: Annotated[
        str | None,
        typer.Option("--primary-conninfo", help="libpq connection string of the primary."),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="The standby's port.")] = None,
    system_id: Annotated[
        str | None, typer.Option("--system-id", help="Which cluster (default: the primary's).")
    ] = None,
    safehold_command: Annotated[
        str | None,
        typer.Option("--safehold-command", help="How the postgres user runs safehold."),
    ] = None,
    patroni: Annotated[
        bool,
        typer.Option(
            "--patroni",
            help="Called by Patroni (create_replica_methods): --datadir and --connstring.",
        ),
    ] = False,
    datadir: Annotated[str | None, typer.Option("--datadir", hidden=True)] = None,
    connstring: Annotated[str | None, typer.Option("--connstring", hidden=True)] = None,
    scope: Annotated[str | None, typer.Option("--scope", hidden=True)] = None,
    role: Annotated[str | None, typer.Option("--role", hidden=True)] = None,
) -> None:
    """Restore the newest base backup as a streaming standby of --primary-conninfo:
    standby.signal, primary_conninfo and restore_command = `safehold pg wal-fetch`, so it
    replays the archive, then streams, and catches up from the archive when it falls
    behind. It archives nothing while it is a standby. Start it with pg_ctl.

    As a Patroni create_replica_methods entry (`command: safehold … pg standby create
    --patroni`), Patroni passes --datadir and --connstring and then configures the replica.
    """
    from safehold.sources.postgres.recovery import restore_command_for
    from safehold.sources.postgres.standby import StandbyRequest, create_standby

    del scope, role  # Patroni passes them; the data directory and the leader suffice
    s = settings(ctx)
    target = pgdata or (datadir if patroni else None)
    if not target:
        raise InvalidArgument("--pgdata is required")
    conninfo = primary_conninfo if primary_conninfo is not None else connstring
    if conninfo is None and not patroni:
        raise InvalidArgument("--primary-conninfo is required")
    password_file = s.password_file or os.environ.get("SAFEHOLD_PASSWORD_FILE")
    command = safehold_command or _default_safehold_command()
    request = StandbyRequest(
        pgdata=target,
        primary_conninfo=conninfo or "",
        restore_command=restore_command_for(command, s.location(), password_file),
        system_id=system_id,
        port=port,
    )
    repo = s.open_repository(lock="shared")
    result = create_standby(repo, request, None if patroni else ErrorPrinter(s.json))
    snap = result.snapshot
    if s.json:
        print_json(
            {
                "message_type": "summary",
                "snapshot_id": snap.id,
                "backup_stop_time": snap.source.get("stop_time"),
                "system_id": snap.source.get("system_id"),
                "pgdata": os.path.abspath(target),
                "files_restored": result.restore.files_restored,
                "bytes_written": result.restore.bytes_written,
                "restore_seconds": round(result.restore_seconds, 3),
            }
        )
    elif not s.quiet:
        out().print(
            f"standby restored from base backup {snap.short_id} (ended "
            f"{snap.source.get('stop_time')}) into {os.path.abspath(target)} in "
            f"{result.restore_seconds:.2f}s: it replays the archive, then streams from "
            "the primary; it archives nothing until it is promoted",
            markup=False,
        )
