"""``mysql check``: is binlog archiving into safehold working? The analogue of ``pg check``
for MariaDB/MySQL, run as the user that runs ``mysql binlog-archive`` (usually mysql): the
server logs binlogs, their files can be read here, mariadb-binlog is found, the repository
opens and takes a lock, and a forced log switch (FLUSH BINARY LOGS) reaches the repository."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from safehold.errors import SafeholdError
from safehold.repo.repository import Repository
from safehold.sources.mysql.binlog import archive_binlogs, list_binlogs
from safehold.sources.mysql.client import PROGRAMS, MysqlConn, ServerFacts
from safehold.sources.setup_check import Finding, os_user, program_found, repository_writable

__all__ = ["check_mysql"]

LOG_BIN_HOWTO = (
    "set log_bin = /var/lib/mysql/mysql-bin and server_id = 1 in the server's option file"
    " (e.g. /etc/mysql/mariadb.conf.d/50-server.cnf), then restart the server"
)


def check_mysql(
    conn: MysqlConn, open_repo: Callable[[], Repository], instance: str | None
) -> list[Finding]:
    """Every check, in the order a fix would go; a check that cannot run says why."""
    try:
        facts = conn.facts()
    except SafeholdError as exc:
        return [
            Finding("connect", False, f"{exc}: pass --socket/--host and --user, or --defaults-file")
        ]
    findings = [_log_bin(facts)]
    if facts.log_bin and facts.log_bin_basename:
        findings.append(_binlogs_readable(conn, facts.log_bin_basename))
    findings.append(_binlog_program())
    repo_finding, repo = repository_writable(open_repo)
    findings.append(repo_finding)
    if repo is None or not all(f.ok for f in findings):
        why = "the failures above come first" if repo is not None else "no repository"
        findings.append(Finding("log switch", False, f"not tried: {why}"))
    else:
        findings.append(_log_switch(conn, repo, instance or facts.default_instance()))
    return findings


def _log_bin(facts: ServerFacts) -> Finding:
    if facts.log_bin and facts.log_bin_basename:
        return Finding("log_bin", True, f"binlogs at {facts.log_bin_basename}.*")
    return Finding("log_bin", False, f"binary logging is off: {LOG_BIN_HOWTO}")


def _binlogs_readable(conn: MysqlConn, basename: str) -> Finding:
    """binlog-archive reads the files themselves, so it runs on the database host as a user
    that may read them."""
    status = conn.query("SHOW MASTER STATUS")
    current = status[0][0] if status else None
    path = os.path.join(os.path.dirname(basename), current or "")
    if current and os.access(path, os.R_OK):
        return Finding("binlog files", True, f"{path} is readable by {os_user()}")
    directory = os.path.dirname(basename)
    return Finding(
        "binlog files",
        False,
        f"{path} is not readable by {os_user()}: run binlog-archive and this check as the"
        f" server's user (runuser -u mysql -- safehold mysql check …) or let {os_user()}"
        f" read {directory}",
    )


def _binlog_program() -> Finding:
    names = PROGRAMS["binlog"]
    found = next((path for name in names if (path := shutil.which(name))), None)
    return program_found(
        names[0], found, "mariadb-client (or mysql-client)", "restore --to-time replays with it"
    )


def _log_switch(conn: MysqlConn, repo: Repository, instance: str) -> Finding:
    """FLUSH BINARY LOGS, then an archiving round: the log just closed must be stored."""
    name = "log switch"
    status = conn.query("SHOW MASTER STATUS")
    closing = status[0][0] if status else None
    try:
        run = archive_binlogs(repo, conn, instance, flush=True)
    except SafeholdError as exc:
        hint = " (GRANT RELOAD ON *.* to this user)" if "RELOAD" in str(exc) else ""
        return Finding(name, False, f"{exc}{hint}")
    if closing in list_binlogs(repo.store, instance):
        return Finding(name, True, f"{closing} reached the repository (instance {instance})")
    return Finding(
        name,
        False,
        f"{closing} did not reach the repository after FLUSH BINARY LOGS"
        + (f" (missing on the server: {', '.join(run.missing)})" if run.missing else ""),
    )
