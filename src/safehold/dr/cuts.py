"""Consistent cuts: a service's file-like sources and its databases' log positions, taken
together, so that a recovery brings files and rows back from the same second.

``record_cut`` backs up every source of the service that is not a database with archived
logs at once (each with the very command the daemon runs for it), then, once the last
has finished, marks each PostgreSQL cluster's WAL with ``pg_create_restore_point`` named
after the cut and switches WAL so the mark is archived promptly. Every file a snapshot
holds was read before the mark, so every row it depends on was committed before the mark
too; the cut's skew (the mark against the earliest snapshot start) bounds the rest.

A cut is one sealed JSON object ``cuts/<service>/<id>`` (docs/FORMAT.md §17), written
create-if-absent like a WAL file, and copied to replicas with everything else.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from safehold.dr.jobs import job_commands, require_service, service_tag, source_tag
from safehold.dr.policy import Policy
from safehold.dr.policy_sources import Source
from safehold.dr.schedule import JobId
from safehold.errors import InvalidArgument, NotFound, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, format_time, parse_time

__all__ = ["CutFailed", "find_cut", "list_cuts", "record_cut"]

PREFIX = "cuts/"
ARCHIVE_WAIT = 60.0


class CutFailed(SafeholdError):
    """No cut recorded for service {0}: {1}"""


def _is_log_database(source: Source) -> bool:
    return source.kind in ("postgres", "mysql")


def _cut_id(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond:06d}Z"


def record_cut(policy: Policy, service: str, repo: Repository) -> dict[str, Any]:
    """Back up the other sources, mark every database's WAL, store the cut (a service
    without a database gets its snapshots taken together, and the moment they all hold).

    Redis goes first: it waits out its replication delay (5 s by default) before it forks
    the copy, which must not stand between the other sources and the mark. Then every
    other source at once, then the mark: the skew is the mark against the earliest moment
    any of that data was read.
    """
    require_service(policy, service)
    sources = policy.services[service].sources
    databases = [s for s in sources if _is_log_database(s)]
    slow = [s for s in sources if s.kind == "redis"]
    others = [s for s in sources if s.kind != "redis" and not _is_log_database(s)]
    doc: dict[str, Any] = {"service": service, "sources": {}}
    for group in (slow, others):
        with ThreadPoolExecutor(max_workers=max(1, len(group))) as pool:
            found = list(pool.map(lambda s: _timed(policy, service, s, repo), group))
        doc["sources"].update({s.name: f for s, f in zip(group, found, strict=True)})
    moment = datetime.now(UTC)  # without a database: every snapshot's data was read by now
    doc["id"] = cut_id = _cut_id(moment)
    for source in databases:
        mark = (
            _mark_binlog(source, repo)
            if source.kind == "mysql"
            else _mark(_pg_conninfo(policy, service, source), cut_id)
        )
        doc["sources"][source.name] = mark
    if databases:
        moment = min(parse_time(doc["sources"][s.name]["time"]) for s in databases)
    reads = [parse_time(f["read_from"]) for f in doc["sources"].values() if "read_from" in f]
    doc["time"] = moment.isoformat()
    doc["skew_seconds"] = round(max(0.0, (moment - min(reads, default=moment)).total_seconds()), 3)
    repo.put_log_file(f"{PREFIX}{service}/{cut_id}", json.dumps(doc).encode())
    return doc


def _timed(policy: Policy, service: str, source: Source, repo: Repository) -> dict[str, Any]:
    """The source's backup: its snapshot, when its data was read, how long it took."""
    began = datetime.now(UTC)
    snap = _backup(policy, service, source, repo)
    if isinstance(snap, str):  # by command: read some time after it began
        return {"snapshot": snap, "read_from": began.isoformat(), "seconds": _since(began)}
    if source.kind in ("files", "bucket"):
        read_from = snap.datetime
    else:
        from safehold.dr.recovery.plan import snapshot_point

        read_from = snapshot_point(snap)
    return {
        "snapshot": snap.id,
        "read_from": read_from.isoformat(),
        "seconds": _since(began),
    }


def _since(began: datetime) -> float:
    return round((datetime.now(UTC) - began).total_seconds(), 3)


def _backup(policy: Policy, service: str, source: Source, repo: Repository) -> Snapshot | str:
    """The source's backup with the daemon's tags: files, SQLite and Redis in this process
    (one repository opened, no program start between the sources: that is the skew);
    other kinds by the very command the daemon runs for them."""
    tags = [service_tag(service), source_tag(service, source.name)]
    options: Any = source.options
    if source.kind == "files":
        from safehold.archive.excludes import read_exclude_file
        from safehold.archive.snapshotter import BackupRequest, run_backup

        patterns = list(options.exclude)
        for path in options.exclude_file:
            patterns.extend(read_exclude_file(path))
        request = BackupRequest(
            paths=list(options.paths),
            tags=[*options.tags, *tags],
            hostname=options.host,
            excludes=patterns,
            exclude_caches=options.exclude_caches,
            one_file_system=options.one_file_system,
        )
        return run_backup(repo, request).snapshot
    if source.kind in ("sqlite", "redis"):
        from safehold.sources.command import StreamSpec

        if source.kind == "sqlite":
            from safehold.sources.sqlite import backup_sqlite, default_name

            name = options.as_path or default_name(options.database)
            spec = StreamSpec(name, tags=[*options.tags, *tags], hostname=options.host)
            return backup_sqlite(repo, options.database, spec, options.tmpdir).snapshot
        from safehold.sources.redis import RedisConn, backup_redis

        conn = RedisConn(options.host, options.port, options.socket, options.auth_file)
        spec = StreamSpec(options.as_path or "redis/dump.rdb", tags=[*options.tags, *tags])
        return backup_redis(repo, conn, spec).snapshot
    return _backup_by_command(policy, service, source)


def _backup_by_command(policy: Policy, service: str, source: Source) -> str:
    """The daemon's command for the source; the id of the snapshot it made."""
    from safehold.sources import external

    command = job_commands(policy, JobId("backup", f"{service}/{source.name}", "backup"))[0]
    proc = external.run(
        [sys.executable, "-m", "safehold", *command.argv], env={**os.environ, **command.env}
    )
    for line in reversed(proc.stdout.decode(errors="replace").splitlines()):
        try:
            summary = json.loads(line)
        except ValueError:
            continue
        if isinstance(summary, dict) and summary.get("snapshot_id"):
            return str(summary["snapshot_id"])
    raise CutFailed(service, f"the backup of {source.name} named no snapshot")


def _pg_conninfo(policy: Policy, service: str, source: Source) -> str:
    """The source's connection; for the service's hot standby, to the node Patroni runs as
    primary now (a replica cannot take a restore point)."""
    from safehold.dr.standby.config import resolve_setup, standby_source
    from safehold.dr.standby.status import current_primary
    from safehold.sources.postgres.physical import conninfo_of

    options: Any = source.options
    host, port = options.host, options.port
    if standby_source(policy, service) == source.name:
        node = current_primary(resolve_setup(policy, service))
        host, port = node.host, node.port
    return conninfo_of(options.dsn, host, port, options.user)


def _mark(conninfo: str, cut_id: str) -> dict[str, Any]:
    """A named restore point in the cluster's WAL, switched out so it is archived."""
    from safehold.sources.postgres.physical import connect

    name = f"safehold-cut-{cut_id}"
    with connect(conninfo) as conn:
        row = conn.execute(
            "SELECT pg_create_restore_point(%s)::text, clock_timestamp(),"
            " (SELECT system_identifier::text FROM pg_control_system())",
            (name,),
        ).fetchone()
        assert row is not None
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        _wait_archived(conn, str(segment[0]) if segment else "")
    return {
        "restore_point": name,
        "lsn": row[0],
        "time": format_time(row[1]),
        "system_id": row[2],
    }


def _mark_binlog(source: Source, repo: Repository) -> dict[str, Any]:
    """The server's binlog position now; the binlog is then closed (FLUSH BINARY LOGS) and
    archived, so a recovery replays to exactly this position. A transaction committed
    between the two lands after the position: it is not part of the cut."""
    from safehold.sources.mysql.binlog import archive_binlogs
    from safehold.sources.mysql.client import MysqlConn, MysqlError

    options: Any = source.options
    conn = MysqlConn(
        options.socket, options.host, options.port, options.user, options.defaults_file
    )
    rows = conn.query("SHOW MASTER STATUS")
    if not rows:
        raise MysqlError(f"binary logging is off on {source.name}: no position to record")
    moment = datetime.now(UTC)
    conn.query("FLUSH BINARY LOGS")
    archive_binlogs(repo, conn, options.instance)
    return {"binlog_position": f"{rows[0][0]}:{rows[0][1]}", "time": format_time(moment)}


def _wait_archived(conn: Any, segment: str) -> None:
    deadline = time.monotonic() + ARCHIVE_WAIT
    while time.monotonic() < deadline:
        row = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
        if row is not None and row[0] is not None and str(row[0]) >= segment:
            return
        time.sleep(0.2)


def list_cuts(repo: Repository, service: str | None = None) -> list[dict[str, Any]]:
    """Every cut (of one service), oldest first."""
    prefix = f"{PREFIX}{service}/" if service else PREFIX
    cuts = []
    for info in repo.store.list(prefix):
        try:
            cuts.append(json.loads(repo.get_log_file(info.key)))
        except (SafeholdError, ValueError):
            continue  # `safehold check` reports damaged objects
    return sorted(cuts, key=lambda c: (c["time"], c["id"]))


def find_cut(repo: Repository, service: str, ref: str) -> dict[str, Any]:
    """A cut of ``service`` by id (or a unique prefix of one), or ``latest``."""
    cuts = list_cuts(repo, service)
    if ref == "latest" and cuts:
        return cuts[-1]
    found = [c for c in cuts if str(c["id"]).startswith(ref)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InvalidArgument(f"cut id {ref!r} is ambiguous: give more of it")
    raise NotFound(f"cut {ref} of service {service} (see `safehold cuts`)")
