"""``recover`` of a service with a MariaDB source (and a files source) against a real
server: the mariabackup backup and the binlog archiving by the daemon's own commands, rows
committed after the backup, then recoveries into sandboxes: ``--to-time T`` brings back
exactly the rows the writer's log says were committed by T, ``--latest`` every archived
row, ``--at-cut`` exactly the rows before the cut's binlog position; a drill checks the
restored tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.schedule import JobId
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time
from safehold.sources.command import StreamSpec
from safehold.sources.mysql.binlog import archive_binlogs
from safehold.sources.mysql.client import MysqlConn
from safehold.sources.mysql.physical import restore_chain, run_physical_backup, start_server
from safehold.sources.mysql.pitr import replay_to
from tests.servers import free_port
from tests.service.daemon_helpers import SAFEHOLD, clean_env, init_repo, write_password
from tests.sources.mysql_server import MariaServer, missing_programs, mysql_dir

GAP = 1.2  # binlog times have whole seconds: T lies alone in its second


@pytest.fixture(scope="module")
def maria() -> Iterator[MariaServer]:
    if missing_programs():
        pytest.fail(f"MariaDB programs missing: {', '.join(missing_programs())}")
    with mysql_dir("safehold-recover-mysql-") as base:
        server = MariaServer(base, "prod").install().start()
        try:
            yield server
        finally:
            server.stop()


class Writer:
    """Inserts rows one transaction at a time and logs when each commit had returned."""

    def __init__(self, server: MariaServer) -> None:
        self.server = server
        self.log: list[tuple[int, datetime]] = []

    def commit(self, count: int) -> None:
        for _ in range(count):
            row = len(self.log) + 1
            self.server.sql(f"INSERT INTO shop.t VALUES ({row}, 'row {row}')")
            self.log.append((row, datetime.now(UTC)))

    def upto(self, moment: datetime) -> list[int]:
        return [row for row, at in self.log if at <= moment]


def _run(config: Path, job: JobId) -> None:
    for command in job_commands(load_policy(config), job):
        proc = subprocess.run(
            [*SAFEHOLD, *command.argv], capture_output=True, env=clean_env(**command.env)
        )
        assert proc.returncode == 0, proc.stderr.decode()


def _archive(config: Path, server: MariaServer) -> None:
    """The server closes its binlog; the daemon's archiving job copies it."""
    server.sql("FLUSH BINARY LOGS")
    _run(config, JobId("backup", "app/db", "logs"))


def _recover(config: Path, root: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [*SAFEHOLD, "--json", "recover", "app", "-c", config, "--target-root", root, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.splitlines()[-1]))


def _rows(datadir: Path) -> list[int]:
    query = "SELECT id FROM shop.t ORDER BY id"
    socket = f"--socket={datadir / 'mariadbd.sock'}"
    argv = ["mariadb", "--no-defaults", socket, "--user=root", "-N", "-B", "-e", query]
    proc = subprocess.run(argv, capture_output=True, check=True)
    return [int(x) for x in proc.stdout.split()]


def _stop(datadir: Path) -> None:
    pid_file = datadir / "mariadbd.pid"
    if not pid_file.exists():
        return
    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 60
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_recover_and_drill_a_mariadb_source_to_a_time_the_latest_and_a_cut(
    maria: MariaServer, tmp_path: Path
) -> None:
    maria.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT)")
    writer = Writer(maria)
    writer.commit(3)
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("before the cut\n")
    password = write_password(tmp_path / "pw")
    init_repo(str(tmp_path / "repo"), password, clean_env())
    config = tmp_path / "safehold.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [repositories.main]
            location = "{tmp_path / "repo"}"
            password_file = "{password}"
            [services.app]
            [[services.app.sources]]
            name = "db"
            kind = "mysql"
            options = {{ socket = "{maria.socket}", user = "root", instance = "prod" }}
            schedules.logs = "*/5 * * * *"
            [[services.app.sources]]
            name = "files"
            kind = "files"
            options.paths = ["{files}"]
            [services.app.recovery]
            timeout = "2m"
            [services.app.recovery.sources.db]
            datadir = "/srv/mariadb"
            port = 3399
            [[services.app.recovery.checks]]
            tcp = "127.0.0.1:{{db.port}}"
            [[services.app.recovery.checks]]
            name = "orders"
            sql = "SELECT count(*) > 0 FROM t"
            source = "db"
            database = "shop"
            expect = "1"
            """
        )
    )
    _run(config, JobId("backup", "app/db", "full"))
    _run(config, JobId("backup", "app/files", "backup"))
    writer.commit(3)
    time.sleep(GAP)
    moment = datetime.now(UTC)
    time.sleep(GAP)
    writer.commit(3)
    _archive(config, maria)

    with mysql_dir("safehold-recover-sandbox-") as base:
        datadir = base / "t" / "srv" / "mariadb"
        try:
            summary = _recover(config, base / "t", "--to-time", format_time(moment))
            assert summary["outcome"] == "recovered", summary
            health = {s["source"]: s for s in summary["steps"] if s["step"] == "health"}
            assert health["orders"]["outcome"] == "ok", health
            assert _rows(datadir) == writer.upto(moment) == [1, 2, 3, 4, 5, 6]
            files_back = base / "t" / str(files / "a.txt").lstrip("/")
            assert files_back.read_text() == "before the cut\n"
        finally:
            _stop(datadir)

        datadir = base / "l" / "srv" / "mariadb"
        try:
            summary = _recover(config, base / "l", "--latest")
            assert summary["outcome"] == "recovered", summary
            assert _rows(datadir) == [row for row, _ in writer.log]
        finally:
            _stop(datadir)

        proc = subprocess.run(
            [*SAFEHOLD, "--json", "cut", "app", "-c", config], capture_output=True, env=clean_env()
        )
        assert proc.returncode == 0, proc.stderr.decode()
        cut = json.loads(proc.stdout.splitlines()[-1])
        assert cut["sources"]["db"]["binlog_position"].startswith("mysql-bin.")
        at_cut = [row for row, _ in writer.log]
        writer.commit(2)  # after the cut
        (files / "a.txt").write_text("after the cut\n")
        _archive(config, maria)
        datadir = base / "c" / "srv" / "mariadb"
        try:
            summary = _recover(config, base / "c", "--at-cut", cut["id"])
            assert summary["outcome"] == "recovered", summary
            assert _rows(datadir) == at_cut == list(range(1, 10))
        finally:
            _stop(datadir)

        proc = subprocess.run(
            [*SAFEHOLD, "--json", "drill", "app", "-c", config, "--sandbox", base / "d"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=300,
        )
        docs = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
        report = next(d for d in docs if d.get("message_type") == "drill")
        checks = {c["name"]: c for c in report["checks"]}
        assert checks["db data"]["passed"], checks["db data"]
        assert "CHECK TABLE clean" in checks["db data"]["detail"]
        assert checks["db data"]["figures"]["rows"]["`shop`.`t`"] == len(writer.log)
    maria.sql("DROP DATABASE shop")


def test_a_cut_position_inside_a_binlog_replays_exactly_to_it(
    maria: MariaServer, local_repo: Repository
) -> None:
    """Transactions after the recorded position but in the same binlog (committed between
    SHOW MASTER STATUS and FLUSH BINARY LOGS while a cut is taken) are not replayed."""
    maria.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT)")
    conn = MysqlConn(socket=str(maria.socket), user="root")
    writer = Writer(maria)
    writer.commit(2)
    backup = run_physical_backup(local_repo, conn, "full", StreamSpec("mysql"), "cutpos")
    writer.commit(3)
    name, position = maria.sql("SHOW MASTER STATUS")[0][:2]
    writer.commit(2)  # after the position, in the same binlog
    archive_binlogs(local_repo, conn, "cutpos", flush=True)
    with mysql_dir("safehold-recover-cutpos-") as base:
        datadir = str(base / "data")
        restore_chain(local_repo, [backup.snapshot], datadir, "mysql")
        done = replay_to(
            local_repo, backup.snapshot, datadir, datetime.now(UTC), "mysql", (name, int(position))
        )
        assert done["complete"] and done["stop_position"] == f"{name}:{position}"
        try:
            start_server(datadir, free_port(), "127.0.0.1", "mysql", 60)
            assert _rows(Path(datadir)) == [1, 2, 3, 4, 5]
        finally:
            _stop(Path(datadir))
    maria.sql("DROP DATABASE shop")
