"""``safehold mysql check`` against the session's real MariaDB server: healthy as the
server's OS user (mysql); each broken set-up fails its own check with one line saying what
to change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from safehold.repo.repository import Repository
from safehold.sources.setup_check import program_found
from safehold.storage import LocalStore
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.sources.mysql_server import MariaServer, mysql_dir
from tests.sources.pg_server import write_safehold_wrapper
from tests.sources.test_pg_check import failed

pytestmark = pytest.mark.timeout(300)


def mysql_check(
    wrapper: Path, repo: Path, password: Path, *args: str | Path, user: str = "mysql"
) -> Any:
    """`mysql check --json` as ``user``: (exit code, {check: (ok, message)})."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    argv = [wrapper, "--json", "--repo", repo, "--password-file", password, "mysql", "check"]
    proc = subprocess.run(
        ["runuser", "-u", user, "--", *map(str, argv), *map(str, args)],
        capture_output=True,
        env=clean,
        timeout=120,
    )
    doc = json.loads(proc.stdout)
    assert doc["message_type"] == "mysql_check" and doc["ok"] == (proc.returncode == 0)
    return proc.returncode, {c["check"]: (c["ok"], c["message"]) for c in doc["checks"]}


def owned_repository(path: Path, owner: str) -> Path:
    Repository.init(LocalStore(path), PASSWORD, CHEAP_KDF)
    for p in (path, *path.rglob("*")):
        shutil.chown(p, owner, owner)
    return path


def test_mysql_check_healthy_then_broken(maria: MariaServer) -> None:
    with mysql_dir() as base:
        wrapper = write_safehold_wrapper(base / "safehold")
        password = base / "password"
        password.write_bytes(PASSWORD)
        shutil.chown(password, "mysql")
        password.chmod(0o644)  # postgres, the stranger below, reads it too
        repo = owned_repository(base / "repo", "mysql")
        server = ["--socket", str(maria.socket), "--user", "mysql"]

        code, checks = mysql_check(wrapper, repo, password, *server)
        assert code == 0 and failed(checks) == {}, checks
        assert set(checks) == {
            "log_bin",
            "binlog files",
            "mariadb-binlog",
            "repository",
            "log switch",
        }
        assert "reached the repository" in checks["log switch"][1]

        # a repository the mysql user cannot write (made by root)
        root_repo = Path(base / "root-repo")
        Repository.init(LocalStore(root_repo), PASSWORD, CHEAP_KDF)
        code, checks = mysql_check(wrapper, root_repo, password, *server)
        assert "readable and writable by mysql" in failed(checks)["repository"]
        assert failed(checks)["log switch"] == "not tried: no repository"

        # another OS user, connected over TCP as a database user without RELOAD: it can
        # read no binlog file, and the log switch is not tried
        maria.sql("CREATE USER IF NOT EXISTS 'checker'@'127.0.0.1' IDENTIFIED BY 'pw'")
        maria.sql("GRANT BINLOG MONITOR ON *.* TO 'checker'@'127.0.0.1'")
        options = base / "checker.cnf"
        options.write_text("[client]\npassword=pw\n")
        shutil.chown(options, "postgres")
        stranger_repo = owned_repository(base / "stranger-repo", "postgres")
        tcp = ["--defaults-file", options, "--host", "127.0.0.1", "--port", str(maria.port)]
        code, checks = mysql_check(
            wrapper, stranger_repo, password, *tcp, "--user", "checker", user="postgres"
        )
        assert (
            "is not readable by postgres: run binlog-archive and this check as the server's"
            in (failed(checks)["binlog files"])
        )
        assert set(failed(checks)) == {"binlog files", "log switch"}, checks


def test_mysql_check_without_binary_logging() -> None:
    with mysql_dir() as base:
        server = MariaServer(base, "nobinlog", binlog=False).install().start()
        try:
            wrapper = write_safehold_wrapper(base / "safehold")
            password = base / "password"
            password.write_bytes(PASSWORD)
            shutil.chown(password, "mysql")
            repo = owned_repository(base / "repo", "mysql")
            code, checks = mysql_check(
                wrapper, repo, password, "--socket", str(server.socket), "--user", "mysql"
            )
        finally:
            server.stop()
    assert code == 1
    assert failed(checks)["log_bin"].startswith("binary logging is off: set log_bin = ")


def test_a_missing_program_says_which_package() -> None:
    finding = program_found("mariadb-binlog", None, "mariadb-client", "restore --to-time")
    assert (finding.ok, finding.message) == (
        False,
        "not found on PATH: install mariadb-client (restore --to-time)",
    )
