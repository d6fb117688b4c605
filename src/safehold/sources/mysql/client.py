"""How safehold reaches a MariaDB server: client options, one-shot queries, server facts.

Every program (mariadb, mariadb-dump, mariabackup) gets the same connection options. A
``--defaults-file`` (with a password, readable only by its owner) comes first, as the
programs require; without one they read their usual option files (~/.my.cnf, ...).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from safehold.errors import SafeholdError
from safehold.sources import external

__all__ = ["MysqlConn", "MysqlError", "ServerFacts", "program"]


class MysqlError(SafeholdError):
    """MariaDB: {0}"""


# MariaDB's names first, then MySQL's (xtrabackup is MySQL's mariabackup)
PROGRAMS = {
    "client": ("mariadb", "mysql"),
    "dump": ("mariadb-dump", "mysqldump"),
    "backup": ("mariabackup", "xtrabackup"),
    "binlog": ("mariadb-binlog", "mysqlbinlog"),
    "server": ("mariadbd", "mysqld"),
}


def program(role: str) -> str:
    for name in PROGRAMS[role]:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return PROGRAMS[role][0]  # external.run reports it missing


@dataclass(frozen=True)
class MysqlConn:
    socket: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    defaults_file: str | None = None

    def args(self) -> list[str]:
        """Connection options for any of the MariaDB programs (defaults file first)."""
        out = [f"--defaults-file={self.defaults_file}"] if self.defaults_file else []
        for name, value in (
            ("socket", self.socket),
            ("host", self.host),
            ("port", self.port),
            ("user", self.user),
        ):
            if value is not None:
                out.append(f"--{name}={value}")
        return out

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query, as text (the client's batch mode; NULL comes back as 'NULL')."""
        proc = external.run([program("client"), *self.args(), "-N", "-B", "-e", sql])
        return [line.split("\t") for line in proc.stdout.decode().splitlines()]

    def facts(self) -> ServerFacts:
        row = self.query(
            "SELECT @@hostname, @@port, @@server_id, @@version, @@datadir, @@log_bin,"
            " @@log_bin_basename"
        )[0]
        return ServerFacts(
            hostname=row[0],
            port=int(row[1]),
            server_id=int(row[2]),
            version=row[3],
            datadir=row[4],
            log_bin=row[5] == "1",
            log_bin_basename=None if row[6] == "NULL" else row[6],
        )


@dataclass(frozen=True)
class ServerFacts:
    hostname: str
    port: int
    server_id: int
    version: str
    datadir: str
    log_bin: bool
    log_bin_basename: str | None

    def default_instance(self) -> str:
        """How backups and binlogs of this server are grouped, unless --instance says."""
        return f"{self.hostname}-{self.server_id}"

    def record(self) -> dict[str, Any]:
        return {"server_id": self.server_id, "version": self.version, "datadir": self.datadir}
