"""Scratch MariaDB servers for the tests: mariadb-install-db into /tmp, a free port, stop by PID.

mariadbd runs as the ``mysql`` user (``--user=mysql``), so its data, socket, pid file and
logs live in a mysql-owned directory under /tmp (pytest's tmp_path is private to root).
Clients connect as the database user ``root`` over the socket, which the OS root user may
do through unix_socket authentication.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port, service_user_dir

READY_DEADLINE = 30.0
PROGRAMS = (
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "mariadb-dump",
    "mariabackup",
    "mariadb-binlog",
)


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]


def mysql_dir(prefix: str = "safehold-mysql-") -> AbstractContextManager[Path]:
    return service_user_dir("mysql", prefix, "SAFEHOLD_KEEP_MYSQL")


def _mysql_owned(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, "mysql", "mysql")
    return path


@dataclass
class MariaServer:
    """One mariadbd on 127.0.0.1:port with its socket in ``run``; binlog on unless told."""

    base: Path
    name: str
    port: int = field(default_factory=free_port)
    binlog: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.base / self.name / "data"

    @property
    def run_dir(self) -> Path:
        return self.base / self.name / "run"

    @property
    def binlog_dir(self) -> Path:
        return self.base / self.name / "binlog"

    @property
    def socket(self) -> Path:
        return self.run_dir / "my.sock"

    @property
    def error_log(self) -> Path:
        return self.run_dir / "my.err"

    def client_args(self) -> list[str]:
        return [f"--socket={self.socket}", "--user=root"]

    def install(self) -> MariaServer:
        for d in (self.datadir, self.run_dir, self.binlog_dir, self.base / self.name / "tmp"):
            _mysql_owned(d)
        proc = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            capture_output=True,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"mariadb-install-db failed: {proc.stderr.decode(errors='replace')}"
            )
        return self

    def start(self) -> MariaServer:
        for d in (self.run_dir, self.base / self.name / "tmp", self.binlog_dir):
            _mysql_owned(d)
        argv = [
            "mariadbd",
            "--no-defaults",
            "--user=mysql",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.run_dir / 'my.pid'}",
            f"--log-error={self.error_log}",
            f"--tmpdir={self.base / self.name / 'tmp'}",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=32M",
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=2",
        ]
        if self.binlog:
            argv += [
                f"--log-bin={self.binlog_dir}/mysql-bin",
                "--server-id=1",
                "--binlog-format=ROW",
            ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mariadbd exited at once: {self._log_tail()}")
            if self.socket.exists() and self.sql("SELECT 1", check=False) == [["1"]]:
                return self
            time.sleep(0.05)
        raise AssertionError(f"mariadbd not ready in {READY_DEADLINE} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-10:])
        except OSError:
            return "(no error log)"

    def sql(self, query: str, database: str | None = None, check: bool = True) -> list[list[str]]:
        proc = subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                *self.client_args(),
                "-N",
                "-B",
                "-e",
                query,
                *([database] if database else []),
            ],
            capture_output=True,
        )
        if proc.returncode != 0:
            if check:
                raise AssertionError(f"{query!r} failed: {proc.stderr.decode(errors='replace')}")
            return []
        return [line.split("\t") for line in proc.stdout.decode().splitlines()]

    def checksums(self) -> dict[str, str]:
        """CHECKSUM TABLE of every user table, by db.table."""
        tables = self.sql(
            "SELECT concat(table_schema, '.', table_name) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"
            " AND table_type = 'BASE TABLE' ORDER BY 1"
        )
        if not tables:
            return {}
        names = ", ".join(f"`{t[0].replace('.', '`.`')}`" for t in tables)
        return {row[0]: row[1] for row in self.sql(f"CHECKSUM TABLE {names} EXTENDED")}

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
