"""``pg``: PostgreSQL base backups, WAL archiving, point-in-time recovery, status."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import ErrorPrinter, count, human_size, out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config
from safehold.errors import InvalidArgument

__all__ = ["pg_app"]

pg_app = typer.Typer(help="PostgreSQL: base backups, WAL archiving, point-in-time recovery.")
app.add_typer(pg_app, name="pg")

EXIT_INCOMPLETE = 3
DsnOpt = Annotated[str | None, typer.Option("--dsn", help="libpq connection string.")]
HostOpt = Annotated[str | None, typer.Option("--host", "-H", help="Server host or socket dir.")]
PortOpt = Annotated[int | None, typer.Option("--port", "-P", help="Server port.")]
UserOpt = Annotated[str | None, typer.Option("--user", "-U", help="Database user.")]


def _conninfo(dsn: str | None, host: str | None, port: int | None, user: str | None) -> str:
    from safehold.sources.postgres.physical import conninfo_of

    return conninfo_of(dsn, host, port, user)


@pg_app.command("backup")
def backup(
    ctx: typer.Context,
    pgdata: Annotated[
        str | None, typer.Option("--pgdata", "-D", help="The cluster's data directory.")
    ] = None,
    type: Annotated[str, typer.Option("--type", help="full (read all) or incr.")] = "incr",
    method: Annotated[
        str,
        typer.Option("--method", help="lowlevel (this host) or basebackup (remote, full only)."),
    ] = "lowlevel",
    dsn: DsnOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag.")] = None,
    hostname: Annotated[str | None, typer.Option("--hostname", help="Host to record.")] = None,
    standby: Annotated[
        str | None,
        typer.Option(
            "--standby",
            help="Back up whichever node of this service's hot standby is primary now "
            "(asks Patroni; its data directory and port replace --pgdata and -H/-P).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Back up a running cluster with pg_backup_start/pg_backup_stop."""
    from safehold.sources.postgres.physical import PgBackupRequest, run_pg_backup

    s = settings(ctx)
    if method not in ("lowlevel", "basebackup"):
        raise InvalidArgument("--method must be lowlevel or basebackup")
    if standby is not None:
        pgdata, host, port = _standby_primary(standby, config, method)
    if method == "lowlevel" and not pgdata:
        raise InvalidArgument("--pgdata is required (or --method basebackup for a remote cluster)")
    repo = s.open_repository(lock="shared")
    conninfo = _conninfo(dsn, host, port, user)
    if method == "basebackup":
        from safehold.sources.postgres.basebackup import run_basebackup

        result = run_basebackup(repo, conninfo, hostname, list(tag or []), s.ensure_locked)
    else:
        request = PgBackupRequest(
            pgdata=pgdata or "",
            conninfo=conninfo,
            type=type,
            hostname=hostname,
            tags=list(tag or []),
            ensure_locked=s.ensure_locked,
        )
        result = run_pg_backup(repo, request, ErrorPrinter(s.json))
    src = result.snapshot.source
    if s.json:
        print_json({"message_type": "summary", **result.summary(), "source": src})
    elif not s.quiet:
        st = result.stats
        out().print(
            f"{src['type']} backup of cluster {src['system_id']} saved as snapshot "
            f"{result.snapshot.short_id}: {count(st.total_files_processed, 'file')} "
            f"({st.files_unmodified} unchanged, not read), "
            f"{human_size(st.total_bytes_processed)}, {human_size(result.data_added)} added, "
            f"LSN {src['start_lsn']}..{src['stop_lsn']} timeline {src['timeline']}, "
            f"{result.duration:.2f}s"
        )
    if result.stats.errors:
        raise typer.Exit(EXIT_INCOMPLETE)


def _standby_primary(service: str, config: str | None, method: str) -> tuple[str, str, int]:
    """(data directory, host, port) of the node Patroni runs as the service's primary."""
    from safehold.dr.standby.config import resolve_setup
    from safehold.dr.standby.processes import is_this_host
    from safehold.dr.standby.status import current_primary

    _, policy = load_config(config)
    node = current_primary(resolve_setup(policy, service))
    # lowlevel reads the data directory here: the same path on a replica's host is not it
    if method == "lowlevel" and not (is_this_host(node.host) and os.path.isdir(node.pgdata)):
        raise InvalidArgument(
            f"the primary {node.name} ({node.host}, {node.pgdata}) is not on this host:"
            " back up from that host, or use method 'basebackup'"
        )
    return node.pgdata, node.host, node.port


@pg_app.command("wal-push")
def wal_push(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="%p: the WAL file, relative to the data directory.")],
    pgdata: Annotated[
        str, typer.Option("--pgdata", "-D", help="Data directory (default: the current one).")
    ] = ".",
    spool: Annotated[
        str | None,
        typer.Option("--spool", help="Asynchronous: wait for `pg wal-pusher --spool` instead."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="With --spool: seconds to wait.")
    ] = 60.0,
    primary: Annotated[
        bool,
        typer.Option(
            "--primary",
            help="This cluster is the new primary: a timeline it creates is production's.",
        ),
    ] = False,
) -> None:
    """archive_command: store one WAL file (idempotent; differing content fails).
    (As PostgreSQL calls it, cli/wal_commands.py answers it before Typer starts.)"""
    if spool is not None:  # asynchronous: the wal-pusher uploads, we wait for its mark
        from safehold.sources.postgres.spool import wait_for_push

        problem = wait_for_push(spool, path, timeout)
        if problem:
            raise InvalidArgument(problem)
        return
    from safehold.cli.wal_commands import push_from

    push_from(settings(ctx), path, pgdata, primary)


@pg_app.command("wal-pusher")
def wal_pusher(
    ctx: typer.Context,
    spool: Annotated[str, typer.Option("--spool", help="Directory for the done/error marks.")],
    pgdata: Annotated[str, typer.Option("--pgdata", "-D", help="The cluster's data directory.")],
    workers: Annotated[int, typer.Option("--workers", help="Uploads at once.")] = 2,
    primary: Annotated[
        bool,
        typer.Option(
            "--primary", help="This cluster is the primary: a timeline it creates is production's."
        ),
    ] = False,
) -> None:
    """Asynchronous archiving: upload WAL as it becomes ready (run as a service)."""
    import signal

    from safehold.sources.postgres.pusher import WalPusher

    s = settings(ctx)
    pusher = WalPusher(s.open_repository(load_index=False), pgdata, spool, workers, primary)
    signal.signal(signal.SIGTERM, lambda *_: pusher.stop())
    signal.signal(signal.SIGINT, lambda *_: pusher.stop())

    def pushed(name: str) -> None:
        if not s.quiet:
            sys.stderr.write(f"safehold: archived {name}\n")

    pusher.run(pushed)


@pg_app.command("wal-fetch")
def wal_fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="%f: the WAL file name.")],
    path: Annotated[str, typer.Argument(help="%p: where to write it.")],
    system_id: Annotated[
        str | None, typer.Option("--system-id", help="Cluster (default: from pg_control).")
    ] = None,
    pgdata: Annotated[str, typer.Option("--pgdata", "-D", help="Data directory.")] = ".",
) -> None:
    """restore_command: fetch one WAL file; exits non-zero when it is not archived.
    (As PostgreSQL calls it, cli/wal_commands.py answers it before Typer starts.)"""
    from safehold.cli.wal_commands import fetch_to

    fetch_to(settings(ctx), name, path, system_id, pgdata)


@pg_app.command("restore")
def restore(
    ctx: typer.Context,
    snapshot: Annotated[
        str | None, typer.Argument(help="Base backup to use (default: chosen for the target).")
    ] = None,
    target_dir: Annotated[str, typer.Option("--target-dir", help="New data directory.")] = "",
    to_time: Annotated[str | None, typer.Option("--to-time", help="Recover to this time.")] = None,
    to_lsn: Annotated[str | None, typer.Option("--to-lsn", help="Recover to this LSN.")] = None,
    to_xid: Annotated[int | None, typer.Option("--to-xid", help="Recover to this xid.")] = None,
    to_name: Annotated[
        str | None, typer.Option("--to-name", help="Recover to a restore point.")
    ] = None,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="Recover all WAL (default).")
    ] = False,
    exclusive: Annotated[
        bool, typer.Option("--exclusive", help="Stop just before the target, not after it.")
    ] = False,
    system_id: Annotated[str | None, typer.Option("--system-id", help="Which cluster.")] = None,
    timeline: Annotated[
        str | None,
        typer.Option(
            "--timeline",
            help="Default: production's lineage. A number, current (the backup's) or latest.",
        ),
    ] = None,
    tablespace: Annotated[
        list[str] | None, typer.Option("--tablespace-map", help="OLD=NEW tablespace location.")
    ] = None,
    promote_as_primary: Annotated[
        bool,
        typer.Option(
            "--promote-as-primary",
            help="It becomes the new primary: archive into this repository, on a timeline "
            "later restores follow. Default: a side copy that does not archive.",
        ),
    ] = False,
    no_archive: Annotated[
        bool,
        typer.Option("--no-archive", help="The default (archive_mode = off); kept for scripts."),
    ] = False,
    safehold_command: Annotated[
        str | None,
        typer.Option("--safehold-command", help="How the postgres user runs safehold."),
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="Start it and wait for recovery.")] = False,
    port: Annotated[
        int | None, typer.Option("--port", help="Port for the restored cluster.")
    ] = None,
    socket_host: Annotated[
        str, typer.Option("--connect-host", help="Host (or socket dir) to check recovery on.")
    ] = "localhost",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for recovery.")
    ] = 3600,
) -> None:
    """Restore a base backup into --target-dir and set up recovery to the target."""
    from safehold.sources.postgres.catalog import RecoveryTarget
    from safehold.sources.postgres.recovery import (
        RecoveryOptions,
        archive_command_for,
        restore_base,
        restore_command_for,
        start_and_wait,
    )
    from safehold.sources.postgres.recovery_plan import check_reached, plan_recovery
    from safehold.sources.postgres.status import wal_gaps_after
    from safehold.sources.postgres.walprefetch import (
        WalPrefetcher,
        spool_of,
        spooled_restore_command,
    )

    s = settings(ctx)
    if not target_dir:
        raise InvalidArgument("--target-dir is required")
    if promote_as_primary and no_archive:
        raise InvalidArgument("--promote-as-primary archives, --no-archive does not: give one")
    given = [t for t in (to_time, to_lsn, to_xid, to_name) if t is not None]
    if len(given) + int(to_latest) > 1:
        raise InvalidArgument(
            "give at most one of --to-time, --to-lsn, --to-xid, --to-name, --to-latest"
        )
    if to_time is not None:  # one reading of the time for both the choice and PostgreSQL
        from safehold.repo.snapshot import format_time, parse_time

        to_time = format_time(parse_time(to_time))
    target = RecoveryTarget(time=to_time, lsn=to_lsn, xid=to_xid, name=to_name)
    repo = s.open_repository(lock="shared")
    plan = plan_recovery(repo, target, snapshot, system_id, timeline, inclusive=not exclusive)
    snap = plan.snapshot
    if target.kind == "latest":
        gaps = wal_gaps_after(repo, snap, lineage=plan.lineage)
        if gaps:
            raise InvalidArgument(
                f"WAL segment {gaps[0]} is missing from the archive: recovery to the latest "
                "point would stop silently before it; give --to-time/--to-lsn before the gap"
            )
    command = safehold_command or _default_safehold_command()
    password_file = s.password_file or os.environ.get("SAFEHOLD_PASSWORD_FILE")
    restore_command = restore_command_for(command, s.location(), password_file)
    spool = spool_of(os.path.abspath(target_dir))
    if start:  # this process fetches WAL ahead of replay; a later start has no spool
        if os.path.exists(spool) and os.listdir(spool):
            raise InvalidArgument(f"WAL spool {spool} is not empty (an interrupted restore?)")
        restore_command = spooled_restore_command(spool, restore_command)
    options = RecoveryOptions(
        target_dir=target_dir,
        target=plan.stop,
        restore_command=restore_command,
        timeline=plan.timeline,
        tablespace_map=dict(t.split("=", 1) for t in tablespace or []),
        archive_command=(
            archive_command_for(command, s.location(), password_file)
            if promote_as_primary
            else None
        ),
        port=port,
        inclusive=plan.inclusive,
    )
    result = restore_base(repo, snap, options, ErrorPrinter(s.json))
    prefetched = 0
    if start:
        conninfo = f"host={socket_host} port={port or 5432} dbname=postgres user=postgres"
        pgdata = os.path.abspath(target_dir)
        prefetcher = WalPrefetcher.for_plan(repo, plan, pgdata, leave_first=True).start()
        try:
            start_and_wait(result, pgdata, plan.pg_bin, conninfo, timeout, repo)
        finally:
            prefetcher.stop()
        prefetched = prefetcher.fetched
        check_reached(repo, plan, result.reached_time, result.reached_lsn)
    archiving = (
        f"archives into {s.location()} as the new primary"
        if promote_as_primary
        else "does not archive (archive_mode = off): a side copy; "
        "restore with --promote-as-primary to make it the new primary"
    )
    doc = {
        "message_type": "summary",
        "snapshot_id": snap.id,
        "backup_type": snap.source.get("type"),
        "backup_stop_time": snap.source.get("stop_time"),
        "target": target.kind,
        "target_value": getattr(target, target.kind, None) if target.kind != "latest" else None,
        "recovery_target": {plan.stop.kind: getattr(plan.stop, plan.stop.kind, None)},
        "recovery_target_timeline": plan.timeline,
        "lineage": plan.lineage.timelines,
        "note": plan.note,
        "target_dir": os.path.abspath(target_dir),
        "files_restored": result.restore.files_restored,
        "bytes_written": result.restore.bytes_written,
        "restore_seconds": round(result.restore_seconds, 3),
        "started": result.started,
        "reached_time": result.reached_time,
        "reached_lsn": result.reached_lsn,
        "reached": result.reached if result.started else None,
        "timeline": result.timeline,
        "recovery_seconds": round(result.recovery_seconds, 3),
        "wal_files_prefetched": prefetched,
        "archiving": "primary" if promote_as_primary else "off",
    }
    if s.json:
        print_json(doc)
    elif not s.quiet:
        out().print(
            f"restored base backup {snap.short_id} ({doc['backup_type']}, ended "
            f"{doc['backup_stop_time']}) to {doc['target_dir']} in {doc['restore_seconds']}s, "
            f"following timelines {plan.lineage.describe()}"
        )
        if plan.note:
            out().print(plan.note)
        if result.started:
            out().print(
                f"recovery done in {doc['recovery_seconds']}s ({prefetched} WAL files "
                f"fetched ahead of replay): reached {result.reached}, "
                f"now on timeline {result.timeline}; the cluster is running"
            )
        out().print(f"the restored cluster {archiving}")


@pg_app.command("restore-table")
def restore_table_cmd(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="[schema.]table to bring back.")],
    to_time: Annotated[
        str, typer.Option("--to-time", help="The moment to take it from (just before the mistake).")
    ],
    database: Annotated[str, typer.Option("--database", "-d", help="Its database.")],
    new_name: Annotated[
        str | None, typer.Option("--as", help="Create it under this name (default TABLE_restored).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the live table and put it in its place.")
    ] = False,
    system_id: Annotated[str | None, typer.Option("--system-id", help="Which cluster.")] = None,
    work_dir: Annotated[
        str | None, typer.Option("--work-dir", help="Where the sandbox cluster goes (room for it).")
    ] = None,
    safehold_command: Annotated[
        str | None,
        typer.Option("--safehold-command", help="How the postgres user runs safehold."),
    ] = None,
    dsn: DsnOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the sandbox's recovery.")
    ] = 3600,
) -> None:
    """Bring one table back as it was at --to-time, with its keys, indexes and constraints.

    Recovers the cluster into a temporary sandbox to that time, then pg_dump -t of the
    table from it into the live cluster (--dsn/-H/-P/-U), in one transaction.
    """
    from safehold.repo.snapshot import format_time, parse_time
    from safehold.sources.postgres.physical import conninfo_of
    from safehold.sources.postgres.recovery import restore_command_for
    from safehold.sources.postgres.restore_table import TableRequest, restore_table

    s = settings(ctx)
    if replace and new_name:
        raise InvalidArgument("give either --as or --replace")
    if not replace and not new_name:
        new_name = f"{table.rsplit('.', 1)[-1]}_restored"
    password_file = s.password_file or os.environ.get("SAFEHOLD_PASSWORD_FILE")
    command = safehold_command or _default_safehold_command()
    request = TableRequest(
        table=table,
        database=database,
        time=format_time(parse_time(to_time)),
        target_conninfo=conninfo_of(dsn, host, port, user, dbname=None),
        restore_command=restore_command_for(command, s.location(), password_file),
        new_name=new_name,
        replace=replace,
        system_id=system_id,
        work_dir=work_dir,
        timeout=timeout,
    )
    repo = s.open_repository(lock="shared")
    result = restore_table(repo, request, ErrorPrinter(s.json))
    if s.json:
        print_json(
            {
                "message_type": "summary",
                "table": result.table,
                "rows": result.rows,
                "database": database,
                "snapshot_id": result.recovery.snapshot.id,
                "reached_time": result.recovery.reached_time,
                "reached_lsn": result.recovery.reached_lsn,
                "replaced": replace,
            }
        )
    elif not s.quiet:
        out().print(
            f"{'replaced' if replace else 'restored'} {result.table} in database {database}: "
            f"{result.rows} rows as of {result.recovery.reached} (base backup "
            f"{result.recovery.snapshot.short_id})"
        )


def _default_safehold_command() -> str:
    found = shutil.which("safehold")
    return found or f"{shlex.quote(sys.executable)} -m safehold"


@pg_app.command("dump")
def dump(
    ctx: typer.Context,
    database: Annotated[
        list[str] | None, typer.Option("--database", "-d", help="Only this database.")
    ] = None,
    dsn: DsnOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag.")] = None,
) -> None:
    """Logical backup: pg_dump -Fc of each database and the globals, in one snapshot."""
    from safehold.sources.postgres.logical import run_dump

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    result = run_dump(
        repo,
        _conninfo(dsn, host, port, user),
        database,
        tags=list(tag or []),
        ensure_locked=s.ensure_locked,
    )
    if s.json:
        print_json(
            {
                "message_type": "summary",
                "snapshot_id": result.snapshot.id,
                "files": result.databases,
                "data_added": result.data_added,
                "total_duration": round(result.duration, 3),
            }
        )
    elif not s.quiet:
        out().print(
            f"dumped {len(result.databases) - 1} databases and the globals into snapshot "
            f"{result.snapshot.short_id}: {human_size(sum(result.databases.values()))}, "
            f"{human_size(result.data_added)} added, {result.duration:.2f}s"
        )


@pg_app.command("restore-dump")
def restore_dump_cmd(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="The database to bring back.")],
    snapshot: Annotated[str, typer.Option("--snapshot", help="Dump snapshot.")] = "latest",
    new_name: Annotated[
        str | None, typer.Option("--as", help="Name of the new database (default: the same).")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel pg_restore jobs.")] = 2,
    globals_too: Annotated[
        bool, typer.Option("--globals", help="Also create roles and tablespaces first.")
    ] = False,
    dsn: DsnOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
) -> None:
    """Restore one database of a `pg dump` snapshot into a new database."""
    from safehold.repo.snapshot import find_snapshot
    from safehold.sources.postgres.logical import restore_dump

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    dumps = [x for x in repo.list_snapshots() if x.source.get("kind") == "postgres-dump"]
    snap = find_snapshot(dumps, snapshot)
    name = restore_dump(
        repo, snap, _conninfo(dsn, host, port, user), database, new_name, jobs, globals_too
    )
    if s.json:
        print_json({"message_type": "summary", "snapshot_id": snap.id, "database": name})
    elif not s.quiet:
        out().print(f"restored {database} from snapshot {snap.short_id} as database {name}")


@pg_app.command("status")
def status(
    ctx: typer.Context,
    system_id: Annotated[str | None, typer.Option("--system-id", help="Only this cluster.")] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Read every WAL file; unreadable ones are gaps.")
    ] = False,
) -> None:
    """Per cluster: base backups, archived WAL, gaps, restorable windows, RPO exposure."""
    from safehold.sources.postgres.status import all_statuses

    s = settings(ctx)
    repo = s.open_repository(load_index=False)
    statuses = [c for c in all_statuses(repo, verify) if system_id in (None, c.system_id)]
    if s.json:
        print_json([c.to_dict() for c in statuses])
        return
    for c in statuses:
        out().print(
            f"cluster {c.system_id}: {count(len(c.backups), 'base backup')}, "
            f"{count(c.wal_files, 'WAL file')} "
            f"({c.wal_first} .. {c.wal_last}), timelines {c.timelines}; production's lineage "
            f"{' -> '.join(map(str, c.lineage))}"
            + (f", other timelines {c.other_timelines} (not followed)" if c.other_timelines else "")
        )
        for warning in c.warnings:
            out().print(f"  WARNING: {warning}")
        if c.archiving_stuck_on:
            out().print(
                f"  PROBLEM: archiving is stuck on {c.archiving_stuck_on} (its push was refused"
                " and nothing newer is archived on production's lineage)"
            )
        for b in c.backups:
            out().print(
                f"  backup {b['short_id']} {b['type']:4} {b['stop_time']} stop LSN {b['stop_lsn']}"
            )
        for name in c.corrupt:
            out().print(f"  CORRUPT: {name} cannot be read")
        for g in c.gaps:
            out().print(
                f"  GAP: {g['segments']} segments missing, {g['first_missing']} .. {g['last_missing']}"
            )
        for w in c.windows:
            out().print(f"  restorable: {w['from']} .. {w['to']}")
        if c.rpo_exposure_seconds is not None:
            out().print(
                f"  RPO exposure now: {c.rpo_exposure_seconds:.0f}s (newest WAL {c.newest_wal_time})"
            )


# registers `pg check` and `pg standby` on pg_app (cli/pg_check_cmd.py, pg_standby_cmd.py)
from safehold.cli import pg_check_cmd, pg_standby_cmd  # noqa: E402, F401
