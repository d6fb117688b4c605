"""Point-in-time recovery: restore a base backup, write the recovery settings, start, wait.

The snapshot's tree holds the data directory at its original absolute path (and each
tablespace at its own); the data directory's contents are restored into the target,
each tablespace's into ``<target>.tablespaces/<oid>`` unless mapped, with the pg_tblspc
links and tablespace_map rewritten. Recovery settings go to
postgresql.auto.conf, with recovery.signal beside it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from safehold.archive.browse import find_node
from safehold.archive.metadata import gid_for, uid_for
from safehold.archive.progress import Progress
from safehold.archive.restore import RestoreOptions, Restorer, RestoreStats
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources import external
from safehold.sources.postgres.catalog import RecoveryTarget
from safehold.sources.postgres.physical import PostgresError, shown
from safehold.sources.postgres.status import wal_gaps_after

__all__ = [
    "RecoveryOptions",
    "RecoveryResult",
    "archive_command_for",
    "recovery_settings",
    "restart_as_configured",
    "restore_base",
    "restore_command_for",
    "start_and_wait",
]

LOG_NAME = "safehold-recovery.log"


@dataclass
class RecoveryOptions:
    """How the restored cluster is set up (``RecoveryPlan`` gives target and timeline).

    ``archive_command`` None (the default) makes a side copy: ``archive_mode = off``, so
    it never archives into the repository, whose later restores it could otherwise
    divert. Set it (``archive_command_for``) only when the restored cluster becomes the
    new primary. ``settings`` are further postgresql.auto.conf lines (a sandbox's socket).

    ``standby``: a streaming standby (standby.signal, ``sources/postgres/standby.py``). It
    archives nothing while it follows (archive_mode = on archives only on a primary), so
    the archive settings of its configuration are left as they are, for the day it is
    promoted.
    """

    target_dir: str
    target: RecoveryTarget
    restore_command: str
    timeline: str
    tablespace_map: dict[str, str] = field(default_factory=dict)
    archive_command: str | None = None
    port: int | None = None
    inclusive: bool = True
    settings: dict[str, str] = field(default_factory=dict)
    standby: bool = False


@dataclass
class RecoveryResult:
    snapshot: Snapshot
    restore: RestoreStats
    restore_seconds: float
    started: bool = False
    reached_time: str | None = None
    reached_lsn: str | None = None
    timeline: int | None = None
    recovery_seconds: float = 0.0

    @property
    def reached(self) -> str:
        """The point reached, in words."""
        if self.reached_time is not None:
            return f"the transaction committed at {self.reached_time} (LSN {self.reached_lsn})"
        return (
            f"the end of the base backup's WAL at LSN {self.reached_lsn}: no transaction "
            "committed after the backup was replayed"
        )


def restore_base(
    repo: Repository, snap: Snapshot, options: RecoveryOptions, progress: Progress | None = None
) -> RecoveryResult:
    """Restore the base backup's files under ``target_dir`` and write recovery settings.

    The data directory's tree is restored straight into the target (and each
    tablespace's into its new location), so nothing is moved across file systems.
    """
    target = os.path.abspath(options.target_dir)
    if os.path.exists(target) and os.listdir(target):
        raise InvalidArgument(f"target directory {target} is not empty")
    started = time.monotonic()
    if snap.source.get("method") == "basebackup":
        from safehold.sources.postgres.basebackup import extract_basebackup

        extract_basebackup(repo, snap, target)
        stats = RestoreStats(files_restored=1)
    else:
        stats = _restore_dir(repo, snap, snap.source["pgdata"], target, progress)
    spaces: dict[str, str] = snap.source.get("tablespaces") or {}
    lines = []
    for oid, old in sorted(spaces.items()):
        new = os.path.abspath(options.tablespace_map.get(old) or f"{target}.tablespaces/{oid}")
        if os.path.exists(new) and os.listdir(new):
            raise InvalidArgument(f"tablespace directory {new} is not empty")
        more = _restore_dir(repo, snap, old, new, progress)
        for key in ("files_restored", "dirs_restored", "bytes_written"):
            setattr(stats, key, getattr(stats, key) + getattr(more, key))
        link = os.path.join(target, "pg_tblspc", oid)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(new, link)
        lines.append(f"{oid} {new}\n")
    if lines:  # PostgreSQL recreates pg_tblspc links from it when it starts from a backup
        map_path = os.path.join(target, "tablespace_map")
        with open(map_path, "w") as f:
            f.writelines(lines)
        _chown_like(map_path, target)
    signal = "standby.signal" if options.standby else "recovery.signal"
    _write_recovery_settings(target, recovery_settings(options), signal)
    return RecoveryResult(snap, stats, time.monotonic() - started)


def _restore_dir(
    repo: Repository, snap: Snapshot, path: str, target: str, progress: Progress | None
) -> RestoreStats:
    """The directory ``path`` of the snapshot, its contents and its own metadata, at ``target``."""
    node = find_node(repo, snap, path)
    if node is None or node.type != "dir" or node.subtree is None:
        raise PostgresError(f"{path} is not a directory in snapshot {snap.short_id}")
    os.makedirs(target, mode=0o700, exist_ok=True)
    stats = Restorer(repo, RestoreOptions(), progress).restore(node.subtree, target)
    if stats.errors:
        raise PostgresError(
            f"{len(stats.errors)} files of {path} could not be restored; first: {stats.errors[0]}"
        )
    os.chmod(target, node.mode)
    if os.geteuid() == 0:
        os.chown(target, uid_for(node.user, node.uid), gid_for(node.group, node.gid))
    return stats


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def recovery_settings(options: RecoveryOptions) -> dict[str, str]:
    t = options.target
    settings = {
        "restore_command": options.restore_command,
        "recovery_target_timeline": options.timeline,
    }
    if t.kind == "immediate":
        settings["recovery_target"] = "immediate"
        settings["recovery_target_action"] = "promote"
    elif t.kind != "latest":
        settings[f"recovery_target_{t.kind}"] = str(getattr(t, t.kind))
        settings["recovery_target_action"] = "promote"
        settings["recovery_target_inclusive"] = "on" if options.inclusive else "off"
    if options.archive_command is None:
        if not options.standby:
            settings["archive_mode"] = "off"
    else:
        settings["archive_mode"] = "on"
        settings["archive_command"] = options.archive_command
    if options.port is not None:
        settings["port"] = str(options.port)
    return settings | options.settings


def _write_recovery_settings(pgdata: str, settings: dict[str, str], signal_name: str) -> None:
    conf = os.path.join(pgdata, "postgresql.auto.conf")
    with open(conf, "a") as f:
        f.write("\n# written by safehold pg restore\n")
        for key, value in settings.items():
            f.write(f"{key} = {_quote(value)}\n")
    signal = os.path.join(pgdata, signal_name)
    open(signal, "w").close()
    for path in (conf, signal):
        _chown_like(path, pgdata)


def _chown_like(path: str, reference: str) -> None:
    st = os.stat(reference)
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid)


def owner_name(path: str) -> str:
    import pwd

    return pwd.getpwuid(os.stat(path).st_uid).pw_name


def start_and_wait(
    result: RecoveryResult,
    pgdata: str,
    pg_bin: str,
    conninfo: str,
    timeout: float,
    repo: Repository,
    server_settings: dict[str, str] | None = None,
) -> RecoveryResult:
    """Start the restored cluster, wait for recovery to end, read where it stopped.

    ``server_settings`` go on the server's command line for this start only (the
    configuration files are not touched); ``restart_as_configured`` drops them."""
    log_path = os.path.join(pgdata, LOG_NAME)
    began = time.monotonic()
    proc = _pg_ctl(pgdata, pg_bin, timeout, "start", server_settings)
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode != 0 or not _running(pgdata):
            raise _recovery_failure(result, repo, log_path)
        state = _query_state(conninfo)
        if state is not None and not state["in_recovery"]:
            break
        if time.monotonic() > deadline:
            raise PostgresError(f"recovery did not finish within {timeout:.0f} s; see {log_path}")
        time.sleep(0.2)
    result.started = True
    result.recovery_seconds = time.monotonic() - began
    replay = state["replay_time"]
    result.reached_time = replay.isoformat() if isinstance(replay, datetime) else None
    result.reached_lsn = state["lsn"]
    result.timeline = state["timeline"]
    return result


def restart_as_configured(pgdata: str, pg_bin: str, timeout: float) -> None:
    """Stop the cluster (fast: its shutdown checkpoint writes every dirty buffer) and start
    it with nothing on its command line, so that it runs with its own configuration."""
    if _pg_ctl(pgdata, pg_bin, timeout, "stop").returncode != 0:
        raise PostgresError(f"the recovered server on {pgdata} did not stop for its restart")
    if _pg_ctl(pgdata, pg_bin, timeout, "start").returncode != 0 or not _running(pgdata):
        log = os.path.join(pgdata, LOG_NAME)
        raise PostgresError(f"the recovered server on {pgdata} did not start again; see {log}")


def _pg_ctl(
    pgdata: str, pg_bin: str, timeout: float, action: str, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``pg_ctl start`` (logging to LOG_NAME, with ``settings`` as ``-c`` options) or
    ``pg_ctl stop -m fast``, as the data directory's owner, waiting up to ``timeout``."""
    argv = [os.path.join(pg_bin, "pg_ctl"), "-D", pgdata, "-w", "-t", str(int(timeout))]
    if action == "start":
        argv += ["-l", os.path.join(pgdata, LOG_NAME)]
        if settings:
            options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
            argv += ["-o", options]
    else:
        argv += ["-m", "fast"]
    return external.run(external.as_user(owner_name(pgdata), [*argv, action]), check=False)


def _running(pgdata: str) -> bool:
    pid_file = os.path.join(pgdata, "postmaster.pid")
    try:
        with open(pid_file) as f:
            pid = int(f.readline())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _query_state(conninfo: str) -> dict[str, Any] | None:
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp(),"
                " pg_last_wal_replay_lsn()::text, CASE WHEN pg_is_in_recovery() THEN NULL"
                " ELSE pg_walfile_name(pg_current_wal_lsn()) END"
            ).fetchone()
    except psycopg.Error as exc:
        if _refused_login(exc):  # the server is up and says no: waiting cannot help
            raise PostgresError(
                f"the restored cluster refuses the connection that watches its recovery"
                f" ({shown(conninfo)}): {_server_said(exc)}; it runs with the pg_hba.conf of"
                " the backup: give --connect-host (and PGPASSWORD) that it accepts"
            ) from None
        return None
    assert row is not None
    # the timeline written now (after a promotion the checkpoint may still name the old one)
    timeline = int(row[3][:8], 16) if row[3] else None
    return {"in_recovery": row[0], "replay_time": row[1], "lsn": row[2], "timeline": timeline}


LOGIN_REFUSED = ("authentication failed", "no pg_hba.conf entry", "no password supplied")


def _refused_login(exc: psycopg.Error) -> bool:
    text = str(exc)
    return any(reason in text for reason in LOGIN_REFUSED)


def _server_said(exc: psycopg.Error) -> str:
    """The server's words in a failed connection's message (after libpq's preamble)."""
    text = " ".join(str(exc).split())
    return text.rsplit("FATAL: ", 1)[-1] if "FATAL: " in text else text


def _recovery_failure(result: RecoveryResult, repo: Repository, log_path: str) -> PostgresError:
    """Why recovery stopped: a gap in the archived WAL when there is one, else the log."""
    gaps = wal_gaps_after(repo, result.snapshot, verify=True)
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.strip() for line in f if "FATAL" in line or "PANIC" in line]
    except OSError:
        lines = []
    reason = lines[-1] if lines else "the server stopped"
    fetch_failure = _restore_command_failure(log_path)
    if fetch_failure:  # its own words say why, PostgreSQL's FATAL only what followed
        return PostgresError(
            f"recovery failed: the restore_command failed: {fetch_failure}; the server "
            f"said: {reason} (log: {log_path})"
        )
    if gaps:
        return PostgresError(
            f"recovery failed: WAL segment {gaps[0]} is missing from the archive or "
            f"unreadable (a gap); the server said: {reason}"
        )
    return PostgresError(f"recovery failed: {reason} (log: {log_path})")


def _restore_command_failure(log_path: str) -> str | None:
    """The last error the restore_command (safehold wal-fetch) printed, other than a file
    not being archived (PostgreSQL asks for files that may not exist, by design)."""
    found = None
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if line.startswith("safehold: ") and "is not in the repository" not in line:
                    found = line.strip().removeprefix("safehold: ")
    except OSError:
        return None
    return found


def restore_command_for(safehold: str, location: str, password_file: str | None) -> str:
    """restore_command: ``safehold … pg wal-fetch %f %p`` from this repository."""
    return _safehold_command(safehold, location, password_file, ["wal-fetch", "%f", "%p"])


def archive_command_for(safehold: str, location: str, password_file: str | None) -> str:
    """archive_command of a cluster made the new primary: ``safehold … pg wal-push --primary
    %p`` into this repository (synchronous: no spool of another host), claiming the
    timeline it creates as production's."""
    return _safehold_command(safehold, location, password_file, ["wal-push", "--primary", "%p"])


def _safehold_command(
    safehold: str, location: str, password_file: str | None, pg_args: list[str]
) -> str:
    parts = [*shlex.split(safehold), "--repo", location]
    if password_file:
        parts += ["--password-file", os.path.abspath(password_file)]
    return shlex.join([*parts, "pg", *pg_args]).replace("'%f'", "%f").replace("'%p'", "%p")
