"""``pg check``: is this cluster's WAL archiving into safehold working, as pgBackRest's
``check`` asks? Run as the database's OS user, it looks at what the archive_command will
meet: the settings, the program and password file it names, the repository, pg_waldump,
and finally a forced WAL switch that must reach the repository within a timeout."""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safehold.errors import SafeholdError
from safehold.repo.repository import Repository
from safehold.sources.postgres.physical import connect
from safehold.sources.postgres.walarchive import list_wal
from safehold.sources.setup_check import (
    Finding,
    os_user,
    program_found,
    repository_writable,
    same_user,
)

__all__ = ["ArchiveSettings", "check_postgres", "repository_of"]

SAFEHOLD_MARKERS = ("wal-push", "safehold.sources.postgres.spool")
EXAMPLE = (
    "archive_command = 'safehold --repo REPO --password-file FILE --quiet pg wal-push %p'"
    " in postgresql.conf, then SELECT pg_reload_conf()"
)
POLL_INTERVAL = 0.5


@dataclass(frozen=True)
class ArchiveSettings:
    """What the server says about itself."""

    archive_mode: str
    archive_command: str
    data_directory: str
    version: int
    system_id: str
    in_recovery: bool

    @property
    def argv(self) -> list[str]:
        try:
            return shlex.split(self.archive_command)
        except ValueError:
            return self.archive_command.split()

    def option(self, *names: str) -> str | None:
        """The value of one of safehold's options in the archive_command (``--repo X``)."""
        argv = self.argv
        for i, arg in enumerate(argv):
            for name in names:
                if arg == name and i + 1 < len(argv):
                    return argv[i + 1]
                if arg.startswith(name + "="):
                    return arg.split("=", 1)[1]
        return None


def read_settings(conninfo: str) -> ArchiveSettings:
    with connect(conninfo) as conn:
        row = conn.execute(
            "SELECT current_setting('archive_mode'), current_setting('archive_command'),"
            " current_setting('data_directory'), current_setting('server_version_num')::int,"
            " (SELECT system_identifier FROM pg_control_system())::text, pg_is_in_recovery()"
        ).fetchone()
    assert row is not None
    return ArchiveSettings(*row)


def repository_of(conninfo: str) -> tuple[str | None, str | None]:
    """(--repo, --password-file) that the cluster's archive_command passes to safehold."""
    found = read_settings(conninfo)
    return found.option("--repo", "-r"), found.option("--password-file", "-p")


def check_postgres(
    conninfo: str, open_repo: Callable[[], Repository], timeout: float
) -> list[Finding]:
    """Every check, in the order a fix would go; a check that cannot run says why."""
    try:
        found = read_settings(conninfo)
    except SafeholdError as exc:
        return [Finding("connect", False, f"{exc}: pass --dsn, or --host/--port/--user")]
    findings = [
        same_user("user", found.data_directory, "PostgreSQL"),
        _archive_mode(found),
        *_archive_command(found),
        _pg_waldump(found),
    ]
    repo_finding, repo = repository_writable(open_repo)
    findings.append(repo_finding)
    if repo is None or not all(f.ok for f in findings if f.name.startswith("archive")):
        why = "the failures above come first" if repo is not None else "no repository"
        findings.append(Finding("wal switch", False, f"not tried: {why}"))
    else:
        findings.append(_wal_switch(conninfo, found, repo, timeout))
    return findings


def _archive_mode(found: ArchiveSettings) -> Finding:
    if found.archive_mode in ("on", "always"):
        return Finding("archive_mode", True, found.archive_mode)
    return Finding(
        "archive_mode",
        False,
        f"archive_mode is {found.archive_mode}: set archive_mode = on in postgresql.conf"
        " and restart PostgreSQL",
    )


def _archive_command(found: ArchiveSettings) -> list[Finding]:
    """The command is safehold's, its program runs for us, its password file opens."""
    command = found.archive_command
    if not any(marker in command for marker in SAFEHOLD_MARKERS):
        shown = repr(command) if command and command != "(disabled)" else "not set"
        return [Finding("archive_command", False, f"archive_command is {shown}: set {EXAMPLE}")]
    findings = [Finding("archive_command", True, command)]
    program = found.argv[0] if found.argv else ""
    path = program if "/" in program else shutil.which(program)
    if path is None or not os.access(path, os.X_OK):
        findings.append(
            Finding(
                "archive_command program",
                False,
                f"{program} cannot be run by {os_user()}: install safehold where every user"
                " can run it (scripts/install.sh: /opt/safehold, linked into /usr/local/bin)"
                " and name that in archive_command",
            )
        )
    password_file = found.option("--password-file", "-p")
    if password_file and not os.access(password_file, os.R_OK):
        findings.append(
            Finding(
                "archive_command password file",
                False,
                f"{password_file} is not readable by {os_user()}: chown {os_user()}"
                f" {password_file}; chmod 600 {password_file}",
            )
        )
    return findings


def _pg_waldump(found: ArchiveSettings) -> Finding:
    """pg_waldump of the server's major version (it reads no other version's WAL)."""
    major = found.version // 10000
    debian = f"/usr/lib/postgresql/{major}/bin/pg_waldump"
    return program_found(
        "pg_waldump",
        debian if os.path.exists(debian) else shutil.which("pg_waldump"),
        f"postgresql-client-{major}",
        "pg status and the recovery points read the archived WAL with it",
    )


def _wal_switch(conninfo: str, found: ArchiveSettings, repo: Repository, timeout: float) -> Finding:
    """Force a segment out and wait for it in the repository (pgBackRest's check does so,
    after a restore point, so that there is something to switch away from)."""
    name = "wal switch"
    if found.in_recovery:
        return Finding(name, True, "not tried: a standby does not switch WAL (check the primary)")
    with connect(conninfo) as conn:
        conn.execute("SELECT pg_create_restore_point('safehold pg check')")
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = str(row[0])
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if any(wal.name == segment for wal in list_wal(repo.store, found.system_id)):
                took = time.monotonic() - started
                return Finding(name, True, f"{segment} reached the repository in {took:.1f} s")
            failed = _archiver_failure(conn, segment)
            if failed:
                return Finding(name, False, failed)
            time.sleep(POLL_INTERVAL)
        failed = _archiver_failure(conn, segment)
    return Finding(
        name,
        False,
        failed
        or f"{segment} did not reach the repository within {timeout:.0f} s: is the archiver"
        " behind (pg_stat_archiver), or the archive_command's --repo another repository?",
    )


def _archiver_failure(conn: Any, segment: str) -> str | None:
    """The archiver's own word when it failed on ``segment`` (or a later one)."""
    row = conn.execute("SELECT last_failed_wal, failed_count FROM pg_stat_archiver").fetchone()
    if row is None or row[0] is None or row[0] < segment:
        return None
    return (
        f"archive_command failed for {row[0]} ({row[1]} failures so far): its error is in the"
        " PostgreSQL log; fix it, then run this check again"
    )
