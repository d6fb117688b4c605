"""``pg backup --method basebackup``: a cluster on another host, through pg_basebackup.

pg_basebackup streams the data directory as one tar (``-D - -Ft``) over the replication
protocol, without WAL (``-X none``): the cluster's archive_command puts that in the
repository, and pg_basebackup waits until the backup's last segment is archived. The tar
goes into the snapshot as ``/pg-basebackup/base.tar``, chunked like any file, so
unchanged parts deduplicate against earlier backups. Always a full backup; tablespaces
are not supported this way (pg_basebackup writes only one tablespace to stdout).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from psycopg.conninfo import conninfo_to_dict

from safehold import __version__
from safehold.archive.backup import BackupStats, own_node
from safehold.archive.browse import dump_file, find_node
from safehold.archive.chunker import Chunker
from safehold.archive.metadata import user_name
from safehold.archive.snapshotter import BackupResult
from safehold.archive.tree import encode_docs, node_doc
from safehold.errors import InvalidArgument
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, format_time, now
from safehold.sources import external
from safehold.sources.postgres.physical import TAG, PostgresError, connect, query_one
from safehold.sources.postgres.status import pg_bin_dir
from safehold.sources.postgres.walarchive import fetch_wal, list_wal
from safehold.sources.postgres.walnames import format_lsn, parse_lsn, segment_name

__all__ = ["TAR_PATH", "extract_basebackup", "run_basebackup"]

DIR = "pg-basebackup"
TAR_PATH = f"/{DIR}/base.tar"
BACKUP_FILE_WAIT = 5.0
_POINT = re.compile(
    r"write-ahead log (start|end) point: ([0-9A-F]+/[0-9A-F]+)(?: on timeline (\d+))?"
)


def run_basebackup(
    repo: Repository,
    conninfo: str,
    hostname: str | None = None,
    tags: list[str] | None = None,
    ensure_locked: Callable[[], None] | None = None,
) -> BackupResult:
    started = time.monotonic()
    with connect(conninfo) as conn:
        system_id = str(query_one(conn, "SELECT system_identifier FROM pg_control_system()"))
        version = int(query_one(conn, "SHOW server_version_num"))
        seg_size = int(
            query_one(conn, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
        )
        if query_one(conn, "SHOW archive_mode") == "off":
            raise PostgresError("archive_mode is off: a base backup is useless without its WAL")
        spaces = query_one(
            conn,
            "SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')",
        )
    if spaces:
        raise InvalidArgument(
            "--method basebackup does not support tablespaces yet; back up on the database "
            "host with the default method"
        )
    params = conninfo_to_dict(conninfo)
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    snapshot_time = now()
    argv = [
        os.path.join(pg_bin_dir(version), "pg_basebackup"),
        "-d", conninfo, "-D", "-", "-Ft", "-X", "none", "-c", "fast", "-v",
        "-l", f"safehold basebackup {snapshot_time}",
    ]  # fmt: skip
    chunker = Chunker(repo.config)
    start_time = datetime.now(UTC)
    size, content = 0, []
    with repo.writer(before_index=ensure_locked) as writer:
        with external.stream(argv) as out:
            for chunk in chunker.chunks(out):  # type: ignore[arg-type]
                content.append(writer.save(BlobType.DATA, chunk)[0])
                size += len(chunk)
        stop_time = datetime.now(UTC)
        tar = own_node(b"base.tar", "file", 0o600, size=size, content=content)
        subtree = writer.save(BlobType.TREE, encode_docs([node_doc(tar)]))[0].hex()
        top = own_node(DIR.encode(), "dir", 0o700, subtree=subtree)
        root = writer.save(BlobType.TREE, encode_docs([node_doc(top)]))[0].hex()
    label = _backup_label(repo, content)
    start = re.search(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", label)
    timeline = re.search(r"START TIMELINE: (\d+)", label)
    if start is None:
        raise PostgresError(f"no START WAL LOCATION in the backup_label of the tar: {label!r}")
    start_lsn = parse_lsn(start.group(1))
    stop_lsn = _stop_lsn(repo, system_id, start_lsn, seg_size, conninfo)
    stats = BackupStats(files_new=1, total_files_processed=1, total_bytes_processed=size)
    snapshot = Snapshot(
        time=snapshot_time,
        tree=root,
        paths=[f"/{DIR}"],
        hostname=hostname or socket.gethostname(),
        username=user_name(os.getuid()),
        tags=sorted({TAG, *(tags or [])}),
        program_version=f"safehold {__version__}",
        source={
            "kind": "postgres",
            "method": "basebackup",
            "type": "full",
            "system_id": system_id,
            "version": version,
            "timeline": int(timeline.group(1)) if timeline else 1,
            "start_lsn": format_lsn(start_lsn),
            "stop_lsn": format_lsn(stop_lsn),
            "start_time": format_time(start_time),
            "stop_time": format_time(stop_time),
            "wal_segment_size": seg_size,
            "pgdata": where,
            "tablespaces": {},
        },
    )
    result = BackupResult(snapshot, stats, writer.stats.stored_bytes, time.monotonic() - started)
    snapshot.summary = {k: v for k, v in result.summary().items() if k != "snapshot_id"}  # type: ignore[misc]
    if ensure_locked is not None:
        ensure_locked()
    repo.save_snapshot(snapshot)
    return result


def _backup_label(repo: Repository, content: list[bytes]) -> str:
    """backup_label from the tar: the server sends it first, so the first blobs hold it."""
    data = b""
    for blob_id in content:
        data += repo.load_blob(blob_id)
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
                for member in tar:
                    if member.name == "backup_label":
                        f = tar.extractfile(member)
                        return f.read().decode() if f else ""
        except tarfile.ReadError:
            continue  # the first member is cut short: read one more blob
    raise PostgresError("the tar from pg_basebackup holds no backup_label")


def _stop_lsn(repo: Repository, system_id: str, start: int, seg_size: int, conninfo: str) -> int:
    """From the backup history file (``….backup``) once archived, else the server's
    current LSN, an upper bound (pg_basebackup -D - does not print the stop point)."""
    name = f"{segment_name(1, start // seg_size, seg_size)[8:]}.{start % seg_size:08X}.backup"
    deadline = time.monotonic() + BACKUP_FILE_WAIT
    while time.monotonic() < deadline:
        for w in list_wal(repo.store, system_id):
            if w.kind == "backup" and w.name.endswith(name):
                text = fetch_wal(repo, system_id, w.name).decode(errors="replace")
                m = re.search(r"STOP WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", text)
                if m:
                    return parse_lsn(m.group(1))
        time.sleep(0.2)
    with connect(conninfo) as conn:
        return parse_lsn(str(query_one(conn, "SELECT pg_current_wal_lsn()")))


def extract_basebackup(
    repo: Repository, snap: Snapshot, target: str, owner: str = "postgres"
) -> None:
    """Unpack the snapshot's tar into ``target`` (as ``owner`` when we are root)."""
    node = find_node(repo, snap, TAR_PATH)
    if node is None or node.type != "file":
        raise PostgresError(f"snapshot {snap.short_id} holds no {TAR_PATH}")
    os.makedirs(target, mode=0o700, exist_ok=True)
    os.chmod(target, 0o700)
    with subprocess.Popen(
        ["tar", "-x", "-f", "-", "-C", target], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        try:
            dump_file(repo, node, proc.stdin)  # type: ignore[arg-type]
        finally:
            proc.stdin.close()
        err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode != 0:
        raise PostgresError(
            f"tar failed extracting {TAR_PATH}: {err.decode(errors='replace').strip()}"
        )
    if os.geteuid() == 0:
        external.run(["chown", "-R", f"{owner}:", target])
