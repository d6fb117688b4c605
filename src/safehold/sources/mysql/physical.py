"""Physical backups with mariabackup: full, and incremental on top of the previous one.

Backup: ``mariabackup --backup`` writes into a fresh staging directory (for an incremental
one with ``--incremental-lsn`` = the previous backup's ``to_lsn``, which is what
``--incremental-basedir`` would read from that backup's xtrabackup_checkpoints, so no
earlier backup needs to be kept on disk); the directory then goes through safehold's file
archiver (content-defined chunks: unchanged pages of the table files of one full backup
are stored once across fulls) and is deleted. The snapshot records the LSN range, the
binlog position of the consistent point (mariadb_backup_binlog_info) and its base.

Restore: the chain (full, then each incremental in order) is restored into staging
directories beside the target, ``mariabackup --prepare`` applies the incrementals in
order, and ``--move-back`` makes the result the new data directory. With a target time,
a scratch server is started on it (no networking, socket in a private directory) and the
archived binlogs are replayed from the backup's position with ``mariadb-binlog
--stop-datetime`` piped into the client.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.archive.backup import Archiver
from safehold.archive.browse import find_node
from safehold.archive.excludes import Excluder
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.restore import RestoreOptions, Restorer
from safehold.archive.snapshotter import BackupResult
from safehold.errors import InvalidArgument, SnapshotNotFound
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, format_time, now, parse_time
from safehold.sources import external
from safehold.sources.command import StreamSpec, record_snapshot
from safehold.sources.mysql.binlog import binlog_key
from safehold.sources.mysql.client import MysqlConn, MysqlError, ServerFacts, program

__all__ = [
    "ChainRestore",
    "choose_chain",
    "physical_backups",
    "restore_chain",
    "run_physical_backup",
    "server_files",
    "start_server",
]

KIND = "mysql"
TAG = "mysql"
BACKUP_TYPES = ("full", "incr")


def physical_backups(repo: Repository, instance: str | None = None) -> list[Snapshot]:
    """mariabackup snapshots (of one instance), oldest first."""
    return sorted(
        (
            s
            for s in repo.list_snapshots()
            if s.source.get("kind") == KIND and instance in (None, s.source.get("instance"))
        ),
        key=lambda s: parse_time(s.source["stop_time"]),
    )


def _read_pairs(path: str) -> dict[str, str]:
    out = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _binlog_info(directory: str) -> dict[str, Any]:
    for name in ("mariadb_backup_binlog_info", "xtrabackup_binlog_info"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as f:
                parts = f.read().split()
            if len(parts) >= 2:
                info: dict[str, Any] = {"binlog_file": parts[0], "binlog_pos": int(parts[1])}
                if len(parts) > 2:
                    info["gtid"] = parts[2]
                return info
    return {}


def run_physical_backup(
    repo: Repository,
    conn: MysqlConn,
    backup_type: str,
    spec: StreamSpec,
    instance: str | None = None,
    tmpdir: str | None = None,
    progress: Progress | None = None,
) -> BackupResult:
    if backup_type not in BACKUP_TYPES:
        raise InvalidArgument(f"--type must be one of {', '.join(BACKUP_TYPES)}")
    facts = conn.facts()
    instance = instance or facts.default_instance()
    binlog_key(instance, "x.000001")  # validates the name, which becomes part of a path
    previous = physical_backups(repo, instance)
    base = previous[-1] if backup_type == "incr" and previous else None
    # one fixed staging path per instance: the snapshots' paths are then the same for
    # every backup of the instance, which is how forget groups them
    staging = os.path.join(tmpdir or tempfile.gettempdir(), f"safehold-mariabackup-{instance}")
    target = os.path.join(staging, "backup")
    with _staging_lock(staging):
        return _backup_into(repo, conn, facts, instance, base, target, spec, progress)


@contextlib.contextmanager
def _staging_lock(staging: str) -> Iterator[None]:
    """Hold ``staging.lock`` (one backup per instance at a time); a leftover dir is cleared."""
    with open(staging + ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MysqlError(f"another backup is using {staging}") from None
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging, mode=0o700)
        try:
            yield
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _backup_into(
    repo: Repository,
    conn: MysqlConn,
    facts: ServerFacts,
    instance: str,
    base: Snapshot | None,
    target: str,
    spec: StreamSpec,
    progress: Progress | None,
) -> BackupResult:
    started = (time.monotonic(), time.time_ns())
    start_time = now()
    argv = [
        program("backup"),
        *conn.args(),
        "--backup",
        f"--target-dir={target}",
        f"--datadir={facts.datadir}",
    ]
    if base is not None:
        argv.append(f"--incremental-lsn={base.source['to_lsn']}")
    external.run(argv)
    stop_time = now()
    checkpoints = _read_pairs(os.path.join(target, "xtrabackup_checkpoints"))
    with repo.writer(before_index=spec.ensure_locked) as writer:
        archiver = Archiver(
            repo, writer, Excluder([], False), force=True, progress=progress or NullProgress()
        )
        tree = archiver.backup_paths([os.fsencode(target)], None)
    if archiver.stats.errors:
        raise MysqlError(
            f"{len(archiver.stats.errors)} files of the mariabackup copy could not be "
            "read; no snapshot recorded"
        )
    if spec.ensure_locked is not None:
        spec.ensure_locked()
    spec.source = {
        "kind": KIND,
        "type": "incr" if base is not None else "full",
        "instance": instance,
        "base": base.id if base is not None else None,
        "from_lsn": int(checkpoints.get("from_lsn", 0)),
        "to_lsn": int(checkpoints["to_lsn"]),
        "start_time": start_time,
        "stop_time": stop_time,
        "staged_path": target,
        **_binlog_info(target),
        **facts.record(),
    }
    spec.tags = sorted({TAG, *spec.tags})
    return record_snapshot(
        repo,
        tree,
        [target],
        spec,
        archiver.stats,
        writer.stats.stored_bytes,
        started,
        snapshot_time=stop_time,
    )


def choose_chain(
    backups: list[Snapshot], ref: str | None = None, to_time: datetime | None = None
) -> list[Snapshot]:
    """The full backup and the incrementals on it that lead to the chosen backup, in order.

    The chosen one: ``ref``, else the newest whose mariabackup run ended at or before
    ``to_time`` (its consistent point is earlier still), else the newest.
    """
    if ref is not None:
        chosen = find_snapshot(backups, ref)
    else:
        fit = [
            b for b in backups if to_time is None or parse_time(b.source["stop_time"]) <= to_time
        ]
        if not fit:
            raise SnapshotNotFound("a MariaDB physical backup that ends before the target time")
        chosen = fit[-1]
    by_id = {b.id: b for b in backups}
    chain = [chosen]
    while chain[0].source.get("base"):
        base = by_id.get(chain[0].source["base"])
        if base is None:
            raise MysqlError(
                f"backup {chain[0].short_id} is an incremental on {chain[0].source['base'][:8]}, "
                "which is not in the repository: the chain is broken"
            )
        if int(chain[0].source.get("from_lsn", -1)) != int(base.source["to_lsn"]):
            raise MysqlError(
                f"backup {chain[0].short_id} starts at LSN {chain[0].source.get('from_lsn')} "
                f"but its base {base.short_id} ends at {base.source['to_lsn']}"
            )
        chain.insert(0, base)
    return chain


@dataclass
class ChainRestore:
    chain: list[Snapshot]
    datadir: str
    restore_seconds: float = 0.0
    prepare_seconds: float = 0.0
    replay: dict[str, Any] = field(default_factory=dict)


def restore_chain(
    repo: Repository,
    chain: list[Snapshot],
    datadir: str,
    owner: str | None = None,
    progress: Progress | None = None,
) -> ChainRestore:
    """Restore and prepare a full + incrementals chain into ``datadir`` (new or empty)."""
    datadir = os.path.abspath(datadir)
    if os.path.exists(datadir) and os.listdir(datadir):
        raise InvalidArgument(f"{datadir} is not empty")
    parent = os.path.dirname(datadir)
    os.makedirs(parent, exist_ok=True)
    result = ChainRestore(chain, datadir)
    started = time.monotonic()
    staging = tempfile.mkdtemp(prefix=".safehold-mariabackup-", dir=parent)
    try:
        dirs = []
        for i, snap in enumerate(chain):
            node = find_node(repo, snap, snap.source["staged_path"])
            if node is None or node.type != "dir":
                raise MysqlError(f"snapshot {snap.short_id} holds no mariabackup directory")
            target = os.path.join(staging, f"{i:03d}-{snap.source['type']}")
            stats = Restorer(repo, RestoreOptions(), progress or NullProgress()).restore(
                node.subtree or "", target
            )
            if stats.errors:
                raise MysqlError(f"{len(stats.errors)} files of {snap.short_id} failed to restore")
            dirs.append(target)
        result.restore_seconds = time.monotonic() - started
        started = time.monotonic()
        backup = program("backup")
        external.run([backup, "--no-defaults", "--prepare", f"--target-dir={dirs[0]}"])
        for incr in dirs[1:]:
            external.run(
                [
                    backup,
                    "--no-defaults",
                    "--prepare",
                    f"--target-dir={dirs[0]}",
                    f"--incremental-dir={incr}",
                ]
            )
        external.run(
            [
                backup,
                "--no-defaults",
                "--move-back",
                f"--target-dir={dirs[0]}",
                f"--datadir={datadir}",
            ]
        )
        if owner is not None and os.geteuid() == 0:
            _chown_tree(datadir, owner)
        result.prepare_seconds = time.monotonic() - started
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _chown_tree(path: str, owner: str) -> None:
    shutil.chown(path, owner, owner)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), owner, owner)


@contextlib.contextmanager
def scratch_server(datadir: str, owner: str | None) -> Any:
    """A mariadbd on ``datadir``: no network, its socket in a private directory.

    It starts with --skip-grant-tables so that any local client (this process) gets in;
    the replay's first statement, FLUSH PRIVILEGES, loads the grant tables again.
    """
    run_dir = tempfile.mkdtemp(prefix="safehold-mariadbd-")
    as_root = os.geteuid() == 0
    if as_root and owner:
        shutil.chown(run_dir, owner, owner)
    sock = os.path.join(run_dir, "sock")
    pid_file = os.path.join(run_dir, "pid")
    argv = [
        program("server"),
        "--no-defaults",
        *([f"--user={owner}"] if as_root and owner else []),
        f"--datadir={datadir}",
        f"--socket={sock}",
        f"--pid-file={pid_file}",
        f"--log-error={os.path.join(run_dir, 'err')}",
        f"--tmpdir={run_dir}",
        "--skip-networking",
        "--skip-grant-tables",
        "--innodb-buffer-pool-size=64M",
    ]
    conn = MysqlConn(socket=sock, user="root")
    try:
        with external.stream(argv) as out:
            _wait_ready(conn, os.path.join(run_dir, "err"))
            try:
                yield conn
            finally:
                _stop(pid_file)
                out.read()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def server_files(datadir: str) -> dict[str, str]:
    """Where a server started by ``start_server`` keeps its socket, pid file and log."""
    return {name: os.path.join(datadir, f"mariadbd.{name}") for name in ("sock", "pid", "err")}


def start_server(
    datadir: str, port: int, bind: str, owner: str | None, timeout: float
) -> MysqlConn:
    """A mariadbd on a restored ``datadir`` serving ``bind:port`` (socket, pid file and
    error log in the data directory), left running; returns once it answers."""
    files = server_files(datadir)
    as_root = os.geteuid() == 0
    argv = [
        program("server"),
        "--no-defaults",
        *([f"--user={owner}"] if as_root and owner else []),
        f"--datadir={datadir}",
        f"--port={port}",
        f"--bind-address={bind}",
        f"--socket={files['sock']}",
        f"--pid-file={files['pid']}",
        f"--log-error={files['err']}",
    ]
    external.spawn(argv)
    conn = MysqlConn(socket=files["sock"], user="root")
    _wait_ready(conn, files["err"], timeout)
    return conn


def _wait_ready(conn: MysqlConn, error_log: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = external.run(
            [program("client"), "--no-defaults", *conn.args(), "-e", "SELECT 1"], check=False
        )
        if proc.returncode == 0:
            return
        time.sleep(0.1)
    raise MysqlError(f"mariadbd did not start within {timeout:.0f} s (see {error_log})")


def _stop(pid_file: str) -> None:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def utc_seconds(moment: datetime) -> str:
    """A time as mariadb-binlog reads it with TZ=UTC: whole seconds, rounded down."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def stop_time_of(snap: Snapshot) -> datetime:
    return parse_time(snap.source["stop_time"])


def format_utc(moment: datetime) -> str:
    return format_time(moment.astimezone(UTC))
