"""Each kind of source brought back by its own restore: what to check before, how to
restore, how to start, how to stop. Nothing here re-implements a source's restore: the
PostgreSQL point-in-time recovery, the SQLite and Redis restores and the file restorer
are called through their Python APIs."""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from safehold.archive.browse import dump_file, find_node
from safehold.archive.restore import RestoreOptions, Restorer
from safehold.dr.recovery.plan import LATEST, RecoveryPlan, SourcePlan, log_target_of
from safehold.errors import RecoveryFailed, RecoveryRefused
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.postgres.walprefetch import WalPrefetcher, spool_of, spooled_restore_command

__all__ = [
    "PgCommands",
    "Restored",
    "check_target",
    "clear_target",
    "estimate_disk",
    "is_running",
    "pg_commands",
    "restore_source",
    "start_source",
    "stop_source",
]

DISK_MARGIN = 1.1  # the estimate is the data's size; file systems need some room on top


@dataclass
class Restored:
    """What a source's restore left for its start."""

    bytes_written: int = 0
    pg_result: Any = None  # sources.postgres.recovery.RecoveryResult
    pg_plan: Any = None  # sources.postgres.recovery_plan.RecoveryPlan
    prefetcher: WalPrefetcher | None = None  # WAL fetched ahead while PostgreSQL replays
    reached: str | None = None
    replay_seconds: float = 0.0  # postgres: start to out of recovery
    restart_seconds: float | None = None  # postgres: the restart with its own settings


# -- preflight --------------------------------------------------------------------------


def _not_empty(path: str) -> bool:
    if os.path.isdir(path) and not os.path.islink(path):
        return bool(os.listdir(path))
    return os.path.lexists(path)


def _port_in_use(host: str | None, port: int) -> bool:
    if host and host.startswith("/"):  # a socket directory (PostgreSQL)
        if os.path.exists(os.path.join(host, f".s.PGSQL.{port}")):
            return True
        host = None
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex((host or "127.0.0.1", port)) == 0:
            return True
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _targets(sp: SourcePlan) -> list[str]:
    if sp.kind == "files":
        return list(sp.paths.values())
    if sp.kind == "redis":
        return [os.path.join(sp.target, "dump.rdb")]
    if sp.kind == "postgres":
        return [sp.target, spool_of(sp.target)]
    if sp.kind in ("bucket", "command") and not sp.target.startswith("/"):
        return []  # a live bucket or a program: nothing on this disk
    return [sp.target]


def check_target(sp: SourcePlan, force: bool) -> list[str]:
    """Why this source cannot be restored where the plan puts it (empty: it can)."""
    problems = []
    for path in _targets(sp):
        if _not_empty(path) and not force:
            problems.append(f"target {path} of source {sp.name} is not empty (use --force)")
    if sp.kind == "postgres" and _postmaster_running(sp.target):
        problems.append(f"a PostgreSQL server is running on {sp.target} (source {sp.name})")
    if sp.port is not None and _port_in_use(sp.host, sp.port):
        problems.append(f"port {sp.port} of source {sp.name} is in use")
    if sp.kind == "postgres":
        from safehold.sources.postgres.status import pg_bin_dir

        pg_ctl = os.path.join(pg_bin_dir(sp.version), "pg_ctl")
        if not os.path.exists(pg_ctl):
            problems.append(f"{pg_ctl} is missing (PostgreSQL {sp.version} server programs)")
    if sp.kind == "redis" and shutil.which("redis-server") is None:
        problems.append("redis-server is not installed")
    if sp.kind == "mysql":
        problems += _mysql_problems(sp)
    return problems


def _mysql_problems(sp: SourcePlan) -> list[str]:
    from safehold.sources.mysql.client import PROGRAMS, program

    problems = [
        f"{PROGRAMS[role][0]} is not installed (source {sp.name})"
        for role in ("backup", "binlog", "client", "server")
        if shutil.which(program(role)) is None
    ]
    if is_running(sp):
        problems.append(f"a MariaDB server is running on {sp.target} (source {sp.name})")
    return problems


def _postmaster_running(pgdata: str) -> bool:
    try:
        with open(os.path.join(pgdata, "postmaster.pid")) as f:
            pid = int(f.readline())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def estimate_disk(plan: RecoveryPlan) -> list[str]:
    """Per file system: is there room for the sources restored onto it?"""
    needed: dict[int, tuple[str, int]] = {}
    for sp in plan.sources:
        paths = _targets(sp)
        if not paths:
            continue
        where = _existing_ancestor(paths[0])
        dev = os.stat(where).st_dev
        place, size = needed.get(dev, (where, 0))
        needed[dev] = (place, size + sp.size)
    problems = []
    for place, size in needed.values():
        free = shutil.disk_usage(place).free
        if size * DISK_MARGIN > free:
            problems.append(
                f"{place}: about {size * DISK_MARGIN / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free"
            )
    return problems


def clear_target(sp: SourcePlan) -> None:
    """Remove what a previous, unfinished run (or --force) left where this source goes."""
    for path in _targets(sp):
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in os.listdir(path):
                full = os.path.join(path, entry)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
        elif os.path.lexists(path):
            os.unlink(path)


# -- restore ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PgCommands:
    """How restored PostgreSQL clusters fetch WAL, and (only for a new primary) archive it."""

    restore: str = ""
    archive: str | None = None


def restore_source(
    repo: Repository, snap: Snapshot, sp: SourcePlan, commands: PgCommands
) -> Restored:
    """Write one source's data where the plan puts it (nothing is started)."""
    if sp.kind == "files":
        return Restored(sum(_restore_path(repo, snap, old, new) for old, new in sp.paths.items()))
    if sp.kind == "postgres":
        return _restore_postgres(repo, snap, sp, commands)
    if sp.kind == "sqlite":
        from safehold.sources.sqlite import restore_sqlite

        os.makedirs(os.path.dirname(sp.target), exist_ok=True)
        copied = restore_sqlite(repo, snap.id, sp.target, overwrite=True)
        return Restored(copied.bytes_written, reached=sp.point)
    if sp.kind == "redis":
        from safehold.sources.redis import restore_redis

        clear_target(sp)
        done = restore_redis(repo, snap.id, sp.target)
        return Restored(done.bytes_written, reached=sp.point)
    if sp.kind == "mysql":
        return _restore_mysql(repo, snap, sp)
    if sp.kind in ("bucket", "command"):
        return _restore_stream_or_bucket(repo, snap, sp)
    raise RecoveryRefused(f"recover cannot restore a {sp.kind} source ({sp.name})")


def _restore_path(repo: Repository, snap: Snapshot, old: str, new: str) -> int:
    """The snapshot's ``old`` (a directory or a file) at ``new``."""
    node = find_node(repo, snap, old)
    if node is None:
        raise RecoveryFailed("restore", f"{old} is not in snapshot {snap.short_id}")
    if node.type == "file":
        os.makedirs(os.path.dirname(new), exist_ok=True)
        with open(new, "wb") as f:
            return dump_file(repo, node, f)
    if node.type != "dir" or node.subtree is None:
        raise RecoveryFailed("restore", f"{old} in snapshot {snap.short_id} is a {node.type}")
    os.makedirs(new, exist_ok=True)
    stats = Restorer(repo, RestoreOptions()).restore(node.subtree, new)
    if stats.errors:
        path, message = stats.errors[0]
        raise RecoveryFailed(
            "restore", f"{len(stats.errors)} files failed; first {path}: {message}"
        )
    os.chmod(new, node.mode & 0o7777)
    return stats.bytes_written


def _restore_postgres(
    repo: Repository, snap: Snapshot, sp: SourcePlan, commands: PgCommands
) -> Restored:
    """`pg restore`'s own plan for the planned backup (production's lineage, a time at the
    end of the archive as its last commit's LSN), then its restore."""
    from safehold.sources.postgres.recovery import RecoveryOptions, restore_base
    from safehold.sources.postgres.recovery_plan import plan_recovery

    pg_plan = plan_recovery(
        repo, log_target_of(sp.log_target or LATEST), snap.id, str(snap.source["system_id"])
    )
    options = RecoveryOptions(
        target_dir=sp.target,
        target=pg_plan.stop,
        restore_command=spooled_restore_command(spool_of(sp.target), commands.restore),
        timeline=pg_plan.timeline,
        archive_command=commands.archive,  # None: a copy never archives into the repository
        port=sp.port,
        inclusive=pg_plan.inclusive,
    )
    result = restore_base(repo, snap, options)
    prefetcher = WalPrefetcher.for_plan(repo, pg_plan, sp.target).start()
    return Restored(result.restore.bytes_written, result, pg_plan, prefetcher=prefetcher)


def _restore_mysql(repo: Repository, snap: Snapshot, sp: SourcePlan) -> Restored:
    """`mysql restore`'s chain restore (mariabackup --prepare, --move-back), then its binlog
    replay to the plan's target: every archived binlog, a time, or a cut's position."""
    from safehold.repo.snapshot import parse_time
    from safehold.sources.mysql.physical import choose_chain, physical_backups, restore_chain
    from safehold.sources.mysql.pitr import replay_to

    chain = choose_chain(physical_backups(repo, snap.source.get("instance")), snap.id)
    clear_target(sp)
    owner = mysql_owner()
    done = restore_chain(repo, chain, sp.target, owner)
    kind, _, value = (sp.log_target or LATEST).partition(" ")
    stop_at = None
    if kind == "position":
        name, _, pos = value.rpartition(":")
        stop_at = (name, int(pos))
    # the latest: every archived transaction, which all lie before the second after it
    moment = parse_time(sp.point) + (timedelta(seconds=1) if kind == LATEST else timedelta())
    replay = replay_to(repo, chain[-1], done.datadir, moment, owner, stop_at)
    size = sum(int(s.summary.get("total_bytes_processed", 0) or 0) for s in chain)
    return Restored(size, reached=replay.get("reached_time") or sp.point)


def mysql_owner() -> str | None:
    """Who runs the restored mariadbd when safehold runs as root: the mysql user."""
    import pwd

    try:
        return pwd.getpwnam("mysql").pw_name
    except KeyError:
        return None


def _restore_stream_or_bucket(repo: Repository, snap: Snapshot, sp: SourcePlan) -> Restored:
    """A bucket into its bucket, a command's stream into its program; in a sandbox both
    come back as files under the target directory."""
    if sp.target.startswith("/"):
        os.makedirs(sp.target, exist_ok=True)
        stats = Restorer(repo, RestoreOptions()).restore(snap.tree, sp.target)
        if stats.errors:
            raise RecoveryFailed("restore", f"{sp.name}: {stats.errors[0][1]}")
        return Restored(stats.bytes_written, reached=sp.point)
    if sp.kind == "bucket":
        from safehold.sources.bucket_client import open_bucket
        from safehold.sources.bucket_restore import restore_to_bucket

        done = restore_to_bucket(repo, snap, open_bucket(sp.target))
        if done.errors:
            raise RecoveryFailed("restore", f"{sp.name}: {done.errors[0][1]}")
        return Restored(done.bytes_written, reached=sp.point)
    from safehold.sources.command import parse_command, pipe_to_command, single_file

    sent = pipe_to_command(repo, single_file(repo, snap), parse_command(sp.target))
    return Restored(sent, reached=sp.point)


# -- start and stop ---------------------------------------------------------------------


def start_source(
    repo: Repository, snap: Snapshot, plan: RecoveryPlan, sp: SourcePlan, restored: Restored
) -> str | None:
    """Start what runs (PostgreSQL replays its WAL to the target first); returns the
    point reached."""
    if sp.kind == "postgres":
        from safehold.archive.restore import RestoreStats
        from safehold.sources.postgres.recovery import (
            RecoveryResult,
            restart_as_configured,
            start_and_wait,
        )
        from safehold.sources.postgres.status import pg_bin_dir

        result = restored.pg_result or RecoveryResult(snap, RestoreStats(), 0.0)
        conninfo = f"host={sp.host} port={sp.port} dbname=postgres user=postgres"
        pg_bin = pg_bin_dir(sp.version)
        try:
            start_and_wait(
                result, sp.target, pg_bin, conninfo, plan.timeout, repo, sp.replay_settings
            )
        finally:
            if restored.prefetcher is not None:
                restored.prefetcher.stop()
        restored.replay_seconds = result.recovery_seconds
        if restored.pg_plan is not None:
            from safehold.sources.postgres.recovery_plan import check_reached

            check_reached(repo, restored.pg_plan, result.reached_time, result.reached_lsn)
        if sp.replay_settings:
            began = time.monotonic()
            restart_as_configured(sp.target, pg_bin, plan.timeout)
            restored.restart_seconds = time.monotonic() - began
        return str(result.reached_time) if result.reached_time else None
    if sp.kind == "redis":
        from safehold.sources.redis import start_server

        assert sp.port is not None
        start_server(sp.target, sp.port, sp.host or "127.0.0.1", plan.timeout)
    if sp.kind == "mysql":
        from safehold.sources.mysql.physical import start_server as start_mariadb

        assert sp.port is not None
        start_mariadb(sp.target, sp.port, sp.host or "127.0.0.1", mysql_owner(), plan.timeout)
    return restored.reached


def is_running(sp: SourcePlan) -> bool:
    """Whether the server of a PostgreSQL, Redis or MariaDB source runs on its target."""
    if sp.kind == "postgres":
        return _postmaster_running(sp.target)
    if sp.kind == "redis":
        return _pid_alive(os.path.join(sp.target, "redis.pid"))
    if sp.kind == "mysql":
        from safehold.sources.mysql.physical import server_files

        return _pid_alive(server_files(sp.target)["pid"])
    return False


def _pid_alive(path: str) -> bool:
    try:
        with open(path) as f:
            os.kill(int(f.read().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def stop_source(sp: SourcePlan) -> None:
    """Stop a server this recovery started (a sandbox's teardown)."""
    from safehold.sources import external

    if sp.kind == "postgres" and _postmaster_running(sp.target):
        from safehold.sources.postgres.recovery import owner_name
        from safehold.sources.postgres.status import pg_bin_dir

        pg_ctl = os.path.join(pg_bin_dir(sp.version), "pg_ctl")
        argv = [pg_ctl, "-D", sp.target, "-m", "fast", "-w", "-t", "60", "stop"]
        external.run(external.as_user(owner_name(sp.target), argv), check=False)
    elif sp.kind == "redis":
        _stop_pid_file(os.path.join(sp.target, "redis.pid"))
    elif sp.kind == "mysql":
        from safehold.sources.mysql.physical import server_files

        _stop_pid_file(server_files(sp.target)["pid"], wait_for_file=True)


def _stop_pid_file(path: str, wait_for_file: bool = False) -> None:
    """SIGTERM to the pid in ``path``; wait until it is gone (or, for a server this process
    started, which stays a zombie until safehold exits, until it removed its pid file)."""
    import signal

    try:
        with open(path) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + (60 if wait_for_file else 10)
    while time.monotonic() < deadline:
        if wait_for_file and not os.path.exists(path):
            return
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)


def pg_commands(repository: Any, location: str, safehold: str, primary: bool) -> PgCommands:
    """restore_command (and archive_command for a new primary) for a policy repository read
    at ``location``: the password comes from its file or command, never written into the
    cluster's settings."""
    import shlex

    from safehold.sources.postgres.recovery import archive_command_for, restore_command_for

    kind, value = repository.password_source()
    if kind == "env":
        raise RecoveryRefused(
            "PostgreSQL fetches WAL in its own processes, which cannot see password_env: give"
            " the repository a password_file or password_command to recover a PostgreSQL source"
        )
    password_file = value if kind == "file" else None
    prefix = f"SAFEHOLD_PASSWORD_COMMAND={shlex.quote(value)} " if kind == "command" else ""
    restore = prefix + restore_command_for(safehold, location, password_file)
    archive = prefix + archive_command_for(safehold, location, password_file) if primary else None
    return PgCommands(restore, archive)
