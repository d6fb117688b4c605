"""Physical base backups with PostgreSQL's non-exclusive low-level API.

One connection runs ``pg_backup_start(label, fast => true)``; the data directory and the
tablespaces go through safehold's archiver (deduplicated, and for an incremental backup
files unchanged since the cluster's previous backup by size, mtime, ctime and inode are
not read again); then ``pg_backup_stop(wait_for_archive => true)`` on the same
connection returns backup_label and tablespace_map, which are grafted into the snapshot's
tree as files of the data directory. Restoring the snapshot's tree alone thus gives a data
directory that PostgreSQL recovers from (with WAL from the archive).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from safehold import __version__
from safehold.archive.backup import Archiver
from safehold.archive.excludes import Excluder
from safehold.archive.metadata import group_name, user_name
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.snapshotter import BackupResult
from safehold.archive.tree import Node, doc_name, encode_docs, node_doc
from safehold.errors import InvalidArgument, SafeholdError
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, format_time, now
from safehold.sources.postgres.catalog import backups_of
from safehold.sources.postgres.pgarchiver import TreeRecorder
from safehold.sources.postgres.walnames import format_lsn, parse_lsn

__all__ = [
    "PgBackupRequest",
    "PostgresError",
    "connect",
    "conninfo_of",
    "excludes_for",
    "query_one",
    "run_pg_backup",
]

BACKUP_TYPES = ("full", "incr")
TAG = "pg"
# What pg_basebackup leaves out (src/backend/backup/basebackup.c): contents of these
# directories (the directories themselves are kept), and these files anywhere.
EXCLUDED_DIR_CONTENTS = (
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
)
EXCLUDED_FILES = (
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_label.old",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
)
EXCLUDED_NAMES = ("pgsql_tmp*", "pg_internal.init")


class PostgresError(SafeholdError):
    """PostgreSQL: {0}"""


@dataclass
class PgBackupRequest:
    pgdata: str
    conninfo: str
    type: str = "incr"
    hostname: str | None = None
    tags: list[str] = field(default_factory=list)
    # raises if the repository lock has lapsed; called before the index and the snapshot
    ensure_locked: Callable[[], None] | None = None


def conninfo_of(
    dsn: str | None,
    host: str | None,
    port: int | None,
    user: str | None,
    dbname: str | None = "postgres",
) -> str:
    """A libpq connection string from a DSN (URL or key=value) and separate settings
    (which win); ``dbname`` is added unless the DSN names one (None: not at all)."""
    try:
        given = conninfo_to_dict(dsn or "")
    except psycopg.Error as exc:
        raise PostgresError(f"invalid connection string: {_one_line(exc)}") from None
    settings = {k: str(v) for k, v in (("host", host), ("port", port), ("user", user)) if v}
    if dbname is not None and "dbname" not in given:
        settings["dbname"] = dbname
    return make_conninfo(dsn or "", **settings)


def shown(conninfo: str) -> str:
    """``conninfo`` fit for an error line or a log: its password masked."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "an unparsable connection string"  # it may hold a password: not echoed
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True, application_name="safehold")
    except psycopg.Error as exc:
        raise PostgresError(
            f"cannot connect ({shown(conninfo) or 'defaults'}): {_one_line(exc)}"
        ) from None


def _one_line(exc: Exception) -> str:
    """libpq's message with its hint lines joined: an error is one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _glob_escape(path: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", path)


def excludes_for(pgdata: str) -> list[str]:
    root = _glob_escape(pgdata.rstrip("/"))
    patterns = [f"{root}/{d}/*" for d in EXCLUDED_DIR_CONTENTS]
    patterns += [f"{root}/{f}" for f in EXCLUDED_FILES]
    return [*patterns, *EXCLUDED_NAMES]


def query_one(conn: psycopg.Connection[Any], sql: str, *params: object) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _cluster_facts(conn: psycopg.Connection[Any], pgdata: str) -> dict[str, Any]:
    data_dir = query_one(conn, "SHOW data_directory")
    if os.path.realpath(data_dir) != os.path.realpath(pgdata):
        raise InvalidArgument(
            f"--pgdata {pgdata} is not the data directory of the server connected to ({data_dir})"
        )
    return {
        "system_id": str(query_one(conn, "SELECT system_identifier FROM pg_control_system()")),
        "version": int(query_one(conn, "SHOW server_version_num")),
        "wal_segment_size": int(
            query_one(conn, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
        ),
        "archive_mode": query_one(conn, "SHOW archive_mode"),
        "tablespaces": {
            str(oid): loc
            for oid, loc in conn.execute(
                "SELECT oid, pg_tablespace_location(oid) FROM pg_tablespace"
                " WHERE spcname NOT IN ('pg_default', 'pg_global')"
            ).fetchall()
        },
    }


def run_pg_backup(
    repo: Repository, request: PgBackupRequest, progress: Progress | None = None
) -> BackupResult:
    if request.type not in BACKUP_TYPES:
        raise InvalidArgument(f"--type must be one of {', '.join(BACKUP_TYPES)}")
    started = time.monotonic()
    started_ns = time.time_ns()
    pgdata = os.path.abspath(request.pgdata)
    hostname = request.hostname or socket.gethostname()
    with connect(request.conninfo) as conn:
        facts = _cluster_facts(conn, pgdata)
        if facts["archive_mode"] == "off":
            raise PostgresError(
                "archive_mode is off: a base backup is useless without its WAL; set "
                "archive_mode = on and archive_command = 'safehold pg wal-push %p'"
            )
        parent = _parent(repo, facts["system_id"], pgdata) if request.type == "incr" else None
        snapshot_time = now()
        label = f"safehold {request.type} {snapshot_time}"
        start_lsn = parse_lsn(str(query_one(conn, "SELECT pg_backup_start(%s, true)", label)))
        start_time = datetime.now(UTC)
        timeline = int(query_one(conn, "SELECT timeline_id FROM pg_control_checkpoint()"))
        paths = [pgdata, *sorted(facts["tablespaces"].values())]
        with repo.writer(before_index=request.ensure_locked) as writer:
            recorder = TreeRecorder(writer)
            archiver = Archiver(
                repo,
                recorder,
                Excluder(excludes_for(pgdata)),
                force=request.type == "full",
                progress=progress or NullProgress(),
                parent_started_ns=_started_ns(parent),
                live=True,  # files change and vanish under a running cluster: WAL fixes them
            )
            tree = archiver.backup_paths(
                [os.fsencode(p) for p in paths], parent.tree if parent else None
            )
            stop_lsn_text, label_file, map_file = query_one(
                conn, "SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(true)"
            )
            stop_time = datetime.now(UTC)
            next_xid = int(query_one(conn, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
            extra = {b"backup_label": label_file.encode()}
            if map_file:
                extra[b"tablespace_map"] = map_file.encode()
            tree = _graft(repo, recorder, tree, pgdata, extra)
    source = {
        "kind": "postgres",
        "type": request.type,
        "system_id": facts["system_id"],
        "version": facts["version"],
        "timeline": timeline,
        "start_lsn": format_lsn(start_lsn),
        "stop_lsn": format_lsn(parse_lsn(str(stop_lsn_text))),
        "start_time": format_time(start_time),
        "stop_time": format_time(stop_time),
        "next_xid": next_xid,
        "wal_segment_size": facts["wal_segment_size"],
        "pgdata": pgdata,
        "tablespaces": facts["tablespaces"],
    }
    snapshot = Snapshot(
        time=snapshot_time,
        tree=tree,
        paths=paths,
        hostname=hostname,
        username=user_name(os.getuid()),
        tags=sorted({TAG, *request.tags}),
        parent=parent.id if parent else None,
        program_version=f"safehold {__version__}",
        source=source,
    )
    result = BackupResult(
        snapshot, archiver.stats, writer.stats.stored_bytes, time.monotonic() - started
    )
    snapshot.summary = {k: v for k, v in result.summary().items() if k != "snapshot_id"}  # type: ignore[misc]
    snapshot.summary["backup_start_ns"] = started_ns
    if request.ensure_locked is not None:
        request.ensure_locked()
    repo.save_snapshot(snapshot)
    return result


def _parent(repo: Repository, system_id: str, pgdata: str) -> Snapshot | None:
    """The cluster's newest base backup of the same data directory."""
    same = [
        s for s in backups_of(repo.list_snapshots(), system_id) if s.source.get("pgdata") == pgdata
    ]
    return same[-1] if same else None


def _started_ns(parent: Snapshot | None) -> int:
    if parent is None:
        return 0
    recorded = parent.summary.get("backup_start_ns")
    return recorded if isinstance(recorded, int) else int(parent.datetime.timestamp() * 1e9)


def _graft(
    repo: Repository, recorder: TreeRecorder, root: str, pgdata: str, files: dict[bytes, bytes]
) -> str:
    """The root tree with ``files`` added to the directory ``pgdata`` (and trees above)."""

    def load(tree_id: str) -> list[dict[str, Any]]:
        raw = recorder.trees.get(tree_id)
        doc: Any = json.loads(raw) if raw is not None else repo.load_tree_document(tree_id)
        return list(doc["nodes"])

    parts = [p for p in os.fsencode(pgdata).split(b"/") if p]
    chain: list[tuple[list[dict[str, Any]], int]] = []  # (docs of a level, index of the way down)
    docs = load(root)
    for part in parts:
        index = next(i for i, d in enumerate(docs) if doc_name(d) == part)
        chain.append((docs, index))
        docs = load(str(docs[index]["subtree"]))
    st = os.stat(pgdata)
    docs = [d for d in docs if doc_name(d) not in files]
    for name, data in files.items():
        blob_id, _ = recorder.save(BlobType.DATA, data)
        docs.append(node_doc(_file_node(name, data, blob_id, st)))
    docs.sort(key=doc_name)
    tree_id, _ = recorder.save(BlobType.TREE, encode_docs(docs))
    for level, index in reversed(chain):
        level = list(level)
        level[index] = dict(level[index], subtree=tree_id.hex())
        tree_id, _ = recorder.save(BlobType.TREE, encode_docs(level))
    return tree_id.hex()


def _file_node(name: bytes, data: bytes, blob_id: bytes, owner: os.stat_result) -> Node:
    now_ns = time.time_ns()
    return Node(
        name=name,
        type="file",
        mode=stat.S_IRUSR | stat.S_IWUSR,
        uid=owner.st_uid,
        gid=owner.st_gid,
        user=user_name(owner.st_uid),
        group=group_name(owner.st_gid),
        mtime_ns=now_ns,
        ctime_ns=now_ns,
        size=len(data),
        content=[blob_id] if data else [],
    )
