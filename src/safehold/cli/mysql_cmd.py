"""``mysql``: MariaDB/MySQL dumps, mariabackup full/incremental, binlog archiving, PITR."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import ErrorPrinter, count, human_size, out, print_json

if TYPE_CHECKING:
    from safehold.sources.mysql.client import MysqlConn

__all__ = ["mysql_app"]

mysql_app = typer.Typer(help="MariaDB/MySQL: dumps, physical backups, binlogs, point in time.")
app.add_typer(mysql_app, name="mysql")

SocketOpt = Annotated[str | None, typer.Option("--socket", "-S", help="Server socket.")]
HostOpt = Annotated[str | None, typer.Option("--host", "-H", help="Server host.")]
PortOpt = Annotated[int | None, typer.Option("--port", "-P", help="Server port.")]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Database user.")]
DefaultsOpt = Annotated[
    str | None,
    typer.Option("--defaults-file", help="Client option file (e.g. with the password)."),
]
InstanceOpt = Annotated[
    str | None,
    typer.Option("--instance", help="Name grouping this server's backups (default host-serverid)."),
]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Extra tag.")]


def _conn(
    socket: str | None, host: str | None, port: int | None, user: str | None, defaults: str | None
) -> MysqlConn:
    from safehold.sources.mysql.client import MysqlConn

    return MysqlConn(socket=socket, host=host, port=port, user=user, defaults_file=defaults)


@mysql_app.command("dump")
def dump(
    ctx: typer.Context,
    socket: SocketOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    defaults_file: DefaultsOpt = None,
    instance: InstanceOpt = None,
    tag: TagOpt = None,
) -> None:
    """mariadb-dump --single-transaction of all databases, users and grants, streamed in."""
    from safehold.sources.command import StreamSpec
    from safehold.sources.mysql.logical import run_dump

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    spec = StreamSpec(
        "mysql/all-databases.sql", tags=list(tag or []), ensure_locked=s.ensure_locked
    )
    conn = _conn(socket, host, port, user, defaults_file)
    result = run_dump(repo, conn, spec, instance, ErrorPrinter(s.json))
    src = result.snapshot.source
    if s.json:
        print_json({"message_type": "summary", **result.summary(), "source": src})
    elif not s.quiet:
        out().print(
            f"dump of {src['instance']} saved as snapshot {result.snapshot.short_id}: "
            f"{human_size(result.stats.total_bytes_processed)}, "
            f"{human_size(result.data_added)} added, binlog position "
            f"{src.get('binlog_file')}:{src.get('binlog_pos')}, {result.duration:.2f}s"
        )


@mysql_app.command("restore-dump")
def restore_dump(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="A dump snapshot, or 'latest'.")],
    database: Annotated[str | None, typer.Option("--database", help="Only this database.")] = None,
    socket: SocketOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    defaults_file: DefaultsOpt = None,
) -> None:
    """Load a dump into a running server (all of it, or one database)."""
    from safehold.sources.mysql.logical import restore_dump as run_restore

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    started = time.monotonic()
    conn = _conn(socket, host, port, user, defaults_file)
    snap, sent = run_restore(repo, conn, snapshot, database, sys.stderr.buffer)
    doc = {
        "message_type": "summary",
        "snapshot_id": snap.id,
        "database": database,
        "bytes_written": sent,
        "total_duration": round(time.monotonic() - started, 3),
    }
    if s.json:
        print_json(doc)
    elif not s.quiet:
        out().print(
            f"loaded dump {snap.short_id} ({human_size(sent)}"
            + (f", database {database} only" if database else "")
            + f") in {doc['total_duration']}s"
        )


@mysql_app.command("backup")
def backup(
    ctx: typer.Context,
    type: Annotated[str, typer.Option("--type", help="full, or incr on the previous.")] = "incr",
    socket: SocketOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    defaults_file: DefaultsOpt = None,
    instance: InstanceOpt = None,
    tmpdir: Annotated[
        str | None, typer.Option("--tmpdir", help="Where mariabackup stages its copy.")
    ] = None,
    tag: TagOpt = None,
) -> None:
    """A physical backup with mariabackup (incremental on the instance's newest backup)."""
    from safehold.sources.command import StreamSpec
    from safehold.sources.mysql.physical import run_physical_backup

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    spec = StreamSpec("", tags=list(tag or []), ensure_locked=s.ensure_locked)
    conn = _conn(socket, host, port, user, defaults_file)
    result = run_physical_backup(repo, conn, type, spec, instance, tmpdir, ErrorPrinter(s.json))
    src = result.snapshot.source
    if s.json:
        print_json({"message_type": "summary", **result.summary(), "source": src})
    elif not s.quiet:
        out().print(
            f"{src['type']} backup of {src['instance']} saved as snapshot "
            f"{result.snapshot.short_id}: LSN {src['from_lsn']}..{src['to_lsn']}, "
            f"{human_size(result.stats.total_bytes_processed)} read, "
            f"{human_size(result.data_added)} added, binlog {src.get('binlog_file')}:"
            f"{src.get('binlog_pos')}, {result.duration:.2f}s"
        )


@mysql_app.command("restore")
def restore(
    ctx: typer.Context,
    snapshot: Annotated[
        str | None, typer.Argument(help="Backup to restore (default: chosen for the time).")
    ] = None,
    to_dir: Annotated[str, typer.Option("--to-dir", help="The new data directory.")] = "",
    to_time: Annotated[
        str | None, typer.Option("--to-time", help="Roll forward with binlogs to this time.")
    ] = None,
    instance: InstanceOpt = None,
    owner: Annotated[
        str, typer.Option("--owner", help="OS user that owns the data (when run as root).")
    ] = "mysql",
) -> None:
    """Restore a full+incremental chain into --to-dir, prepared; with --to-time, replay binlogs."""
    from safehold.errors import InvalidArgument
    from safehold.repo.snapshot import parse_time
    from safehold.sources.mysql.physical import choose_chain, physical_backups, restore_chain
    from safehold.sources.mysql.pitr import replay_to

    s = settings(ctx)
    if not to_dir:
        raise InvalidArgument("--to-dir is required")
    moment = parse_time(to_time) if to_time else None
    repo = s.open_repository(lock="shared")
    backups = physical_backups(repo, instance)
    instances = {b.source["instance"] for b in backups}
    if snapshot is None and len(instances) > 1:
        raise InvalidArgument(
            f"the repository holds backups of {len(instances)} instances "
            f"({', '.join(sorted(instances))}): choose one with --instance"
        )
    chain = choose_chain(backups, snapshot, moment)
    result = restore_chain(repo, chain, to_dir, owner, ErrorPrinter(s.json))
    replay = replay_to(repo, chain[-1], result.datadir, moment, owner) if moment else None
    doc = {
        "message_type": "summary",
        "chain": [{"snapshot": b.id, "type": b.source["type"]} for b in chain],
        "datadir": result.datadir,
        "backup_stop_time": chain[-1].source["stop_time"],
        "restore_seconds": round(result.restore_seconds, 3),
        "prepare_seconds": round(result.prepare_seconds, 3),
        "replay": replay,
    }
    if s.json:
        print_json(doc)
        return
    if not s.quiet:
        out().print(
            f"restored {' + '.join(b.short_id + ' ' + b.source['type'] for b in chain)} into "
            f"{result.datadir} (restore {doc['restore_seconds']}s, prepare "
            f"{doc['prepare_seconds']}s)"
        )
        if replay:
            out().print(
                f"binlogs replayed from {replay['start']} up to {replay['stop_datetime']} UTC: "
                f"reached {replay['reached_time']}"
                + ("" if replay["complete"] else " (the archive ends before the target time)")
            )


@mysql_app.command("binlog-archive")
def binlog_archive(
    ctx: typer.Context,
    socket: SocketOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    user: UserOpt = None,
    defaults_file: DefaultsOpt = None,
    instance: InstanceOpt = None,
    flush: Annotated[
        bool, typer.Option("--flush", help="Close the current binlog first (FLUSH BINARY LOGS).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Keep running, a round every N seconds.")
    ] = 0,
) -> None:
    """Copy closed binary logs into the repository (once, or every --interval seconds)."""
    from safehold.sources.mysql.binlog import archive_binlogs

    s = settings(ctx)
    repo = s.open_repository(load_index=False)
    conn = _conn(socket, host, port, user, defaults_file)
    while True:
        run = archive_binlogs(repo, conn, instance, flush)
        if s.json:
            print_json({"message_type": "summary", **vars(run)})
        elif not s.quiet:
            out().print(
                f"archived {count(len(run.stored), 'binlog')} ({', '.join(run.stored) or 'none new'}); "
                f"current {run.current}"
                + (f"; MISSING on the server: {', '.join(run.missing)}" if run.missing else "")
            )
        if interval <= 0:
            break
        time.sleep(interval)


@mysql_app.command("status")
def status(
    ctx: typer.Context,
    instance: InstanceOpt = None,
) -> None:
    """Per instance: backups, dumps, archived binlogs, gaps, restorable windows, RPO exposure."""
    from safehold.sources.mysql.status import all_statuses

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    statuses = [st for st in all_statuses(repo) if instance in (None, st.instance)]
    if s.json:
        print_json([st.to_dict() for st in statuses])
        return
    for st in statuses:
        out().print(
            f"instance {st.instance}: {len(st.backups)} physical backups, {len(st.dumps)} dumps, "
            f"{count(st.binlog_files, 'binlog')} ({st.binlog_first} .. {st.binlog_last})"
        )
        for g in st.gaps:
            out().print(f"  GAP: {count(g['files'], 'binlog')} missing after {g['after']}")
        for w in st.windows:
            out().print(f"  restorable: {w['from']} .. {w['to']}")
        if st.rpo_exposure_seconds is not None:
            out().print(f"  RPO exposure now: {st.rpo_exposure_seconds:.0f}s")


# registers `mysql check` on mysql_app (its own module: cli/mysql_check_cmd.py)
from safehold.cli import mysql_check_cmd  # noqa: E402, F401
