"""Scratch PostgreSQL clusters for the tests: initdb as postgres, a free port, stop by PID.

PostgreSQL refuses to run as root, so every server program runs through
``runuser -u postgres``; the directories it uses live in a /tmp directory that postgres
can traverse (pytest's own tmp_path is private to root). Clients (psycopg, pgbench,
pg_amcheck) connect as the postgres database user over the cluster's Unix socket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.servers import free_port, service_user_dir

PG_BIN = Path("/usr/lib/postgresql/15/bin")
READY_DEADLINE = 30.0
SRC = Path(__file__).resolve().parents[2] / "src"


def runuser(
    *argv: str | os.PathLike[str], check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, argv)], capture_output=True, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc


def postgres_dir(prefix: str = "safehold-pg-") -> AbstractContextManager[Path]:
    return service_user_dir("postgres", prefix, "SAFEHOLD_KEEP_PG")


def _let_postgres_reach(site: Path) -> None:
    """Give "others" search (x, not read) permission on the directories above ``site`` that
    postgres cannot pass (e.g. a /root of mode 700 holding the test's pyenv), so that
    PostgreSQL's archive_command and the daemon can import the packages under test."""
    if runuser("test", "-r", site / "typer", check=False).returncode == 0:
        return
    for directory in reversed(site.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            sys.stderr.write(f"tests: adding o+x to {directory} so that postgres reaches {site}\n")
            directory.chmod(mode | 0o001)


def write_safehold_wrapper(path: Path, module: str = "safehold") -> Path:
    """An executable ``safehold`` that the postgres user can run (as an installed one would).

    The test's interpreter may live where postgres cannot read (a venv under /root); then
    the system python3 of the same minor version runs safehold from the source tree with
    the venv's packages.
    """
    python = sys.executable
    site = next(p for p in sys.path if p.endswith("site-packages"))
    _let_postgres_reach(Path(site))
    if runuser("test", "-x", python, check=False).returncode != 0:
        python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    path.write_text(f'#!/bin/sh\nexport PYTHONPATH={SRC}:{site}\nexec {python} -m {module} "$@"\n')
    path.chmod(0o755)
    return path


@dataclass
class PgCluster:
    pgdata: Path
    port: int
    sockdir: Path

    @property
    def log(self) -> Path:
        return self.pgdata.parent / f"{self.pgdata.name}.log"

    @property
    def conninfo(self) -> str:
        return f"host={self.sockdir} port={self.port} user=postgres dbname=postgres"

    def client_args(self) -> list[str]:
        return ["-h", str(self.sockdir), "-p", str(self.port), "-U", "postgres"]

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            f"host={self.sockdir} port={self.port} user=postgres dbname={dbname}", autocommit=True
        )

    def sql(self, query: str, *params: Any, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params or None)
            return cur.fetchall() if cur.description else []

    def start(self) -> None:
        runuser(
            PG_BIN / "pg_ctl",
            "-D",
            self.pgdata,
            "-l",
            self.log,
            "-w",
            "-t",
            str(int(READY_DEADLINE)),
            "start",
        )

    def pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, mode: str = "fast") -> None:
        pid = self.pid()
        if pid is None:
            return
        proc = runuser(
            PG_BIN / "pg_ctl", "-D", self.pgdata, "-m", mode, "-w", "-t", "30", "stop", check=False
        )
        if proc.returncode != 0:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def wait_archived(self, timeout: float = 60.0) -> None:
        """Switch to a new segment and wait until the old one is archived."""
        name = self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last, failed = self.sql(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
            )[0]
            if last is not None and last >= name:
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} not archived within {timeout} s (last failed: {failed})")


def init_cluster(base: Path, name: str, archive_command: str, **settings: str) -> PgCluster:
    pgdata = base / name
    runuser(
        PG_BIN / "initdb",
        "-D",
        pgdata,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    )
    cluster = PgCluster(pgdata, free_port(), base)
    conf = {
        "listen_addresses": "''",
        "port": str(cluster.port),
        "unix_socket_directories": str(base),
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command,
        "max_wal_senders": "4",
        "fsync": "off",
        "shared_buffers": "32MB",
        "max_wal_size": "256MB",
        "track_commit_timestamp": "on",
        "log_min_messages": "info",
    } | settings
    with open(pgdata / "postgresql.conf", "a") as f:
        for key, value in conf.items():
            quoted = value if value.startswith("'") else "'" + value.replace("'", "''") + "'"
            f.write(f"{key} = {quoted}\n")
    return cluster
