"""``safehold pg check`` as PostgreSQL's OS user runs it, against a real PostgreSQL 15
cluster: a healthy set-up passes every check; each broken one fails its check with one
line saying what to change."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safehold.sources.postgres.check import ArchiveSettings, _pg_waldump
from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster, runuser

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[2]
INSTALLED_TEST = "test_installed_safehold_archives_as_postgres"


@pytest.fixture(scope="module", autouse=True)
def install(
    pg_env: PgEnv, request: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes] | None]:
    """scripts/install.sh into the module's directory, started with the module's first test:
    it waits on PyPI and the disk for about a minute, which the checks before it overlap."""
    if not any(item.name == INSTALLED_TEST for item in request.session.items):
        yield None
        return
    script = [
        str(ROOT / "scripts" / "install.sh"),
        pg_env.base / "opt-safehold",
        pg_env.base / "bin",
    ]
    with (
        open(pg_env.base / "install.out", "w") as out,
        open(pg_env.base / "install.err", "w") as err,
    ):
        proc = subprocess.Popen(["bash", *script], stdout=out, stderr=err, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:  # its test did not run to the end: pip goes too
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def pg_check(env: PgEnv, cluster: PgCluster, *args: str, as_root: bool = False) -> Any:
    """`pg check --json` as postgres (or root): (exit code, {check: (ok, message)})."""
    argv = [env.wrapper, "--json", *args, "pg", "check", "--host", env.base]
    argv += ["--port", str(cluster.port), "--user", "postgres", "--timeout", "20s"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    if as_root:
        proc = subprocess.run(list(map(str, argv)), capture_output=True, env=clean)
    else:
        proc = runuser(*argv, check=False, env=clean)
    doc = json.loads(proc.stdout)
    assert doc["message_type"] == "pg_check" and doc["ok"] == (proc.returncode == 0)
    return proc.returncode, {c["check"]: (c["ok"], c["message"]) for c in doc["checks"]}


def failed(checks: dict[str, tuple[bool, str]]) -> dict[str, str]:
    return {name: message for name, (ok, message) in checks.items() if not ok}


def set_archive_command(cluster: PgCluster, command: str) -> None:
    cluster.sql(f"ALTER SYSTEM SET archive_command = '{command}'")
    cluster.sql("SELECT pg_reload_conf()")


def test_pg_check_healthy_then_each_broken_setting(pg_env: PgEnv, tmp_path: Path) -> None:
    env = pg_env
    cluster = env.cluster("checked")
    code, checks = pg_check(env, cluster)  # the repository: the one archive_command names
    assert code == 0 and failed(checks) == {}, checks
    assert set(checks) == {
        "user",
        "archive_mode",
        "archive_command",
        "pg_waldump",
        "repository",
        "wal switch",
    }
    assert "reached the repository" in checks["wal switch"][1]

    # run as root while the cluster runs as postgres
    code, checks = pg_check(env, cluster, as_root=True)
    assert code == 1 and "run this check as postgres" in failed(checks)["user"], checks

    # not safehold's archive_command
    set_archive_command(cluster, "/bin/true %p")
    code, checks = pg_check(env, cluster)
    assert code == 1
    assert "archive_command = 'safehold --repo" in failed(checks)["archive_command"]
    assert failed(checks)["wal switch"].startswith("not tried")

    # a program postgres cannot run (a venv under /root, as the README's once was)
    unreachable = f"/root/.venv-{os.getpid()}/bin/safehold"
    set_archive_command(cluster, f"{unreachable} {' '.join(env.safehold_args)} pg wal-push %p")
    code, checks = pg_check(env, cluster)
    assert f"{unreachable} cannot be run by postgres" in failed(checks)["archive_command program"]

    # a password file postgres cannot read
    secret = env.base / "root-only.password"
    secret.write_bytes(b"whatever")
    secret.chmod(0o600)
    set_archive_command(
        cluster, f"{env.wrapper} --repo {env.repo} --password-file {secret} pg wal-push %p"
    )
    code, checks = pg_check(env, cluster)
    message = failed(checks)["archive_command password file"]
    assert (
        message
        == f"{secret} is not readable by postgres: chown postgres {secret}; chmod 600 {secret}"
    )
    assert "repository" in failed(checks)  # the same password file opens the repository

    # archiving that fails although everything looks right: a wrong password in its file
    wrong = env.base / "wrong.password"
    wrong.write_bytes(b"wrong password")
    shutil.chown(wrong, "postgres")
    set_archive_command(
        cluster, f"{env.wrapper} --repo {env.repo} --password-file {wrong} pg wal-push %p"
    )
    code, checks = pg_check(
        env, cluster, "--repo", str(env.repo), "--password-file", str(env.password_file)
    )
    assert set(failed(checks)) == {"wal switch"}, checks
    assert "archive_command failed for" in failed(checks)["wal switch"]
    set_archive_command(cluster, env.archive_command)

    # a repository postgres cannot write (made by root)
    root_repo = env.base / "root-repo"
    env.run("init", "--kdf-memory", "256", "--kdf-iterations", "1", repo=str(root_repo))
    code, checks = pg_check(
        env, cluster, "--repo", str(root_repo), "--password-file", str(env.password_file)
    )
    assert "readable and writable by postgres" in failed(checks)["repository"], checks


def test_installed_safehold_archives_as_postgres(
    pg_env: PgEnv, install: subprocess.Popen[bytes] | None
) -> None:
    """The production install (scripts/install.sh: a venv of the system Python, linked into
    a bin directory) is what archive_command runs as postgres, and pg check passes with it.
    About a minute: pip installs safehold and its dependencies into the new venv."""
    assert install is not None
    assert install.wait(timeout=900) == 0, (pg_env.base / "install.err").read_text()[-3000:]
    assert "checked: postgres runs" in (pg_env.base / "install.out").read_text()
    installed = pg_env.base / "bin" / "safehold"
    args = " ".join(pg_env.safehold_args)
    cluster = pg_env.cluster("installed", f"{installed} {args} --quiet pg wal-push %p")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    check = runuser(installed, "pg", "check", "-H", pg_env.base, "-P", str(cluster.port), env=clean)
    assert check.stdout.decode().endswith("pg check: all checks passed\n"), check.stdout


def test_pg_check_archive_mode_off(pg_env: PgEnv) -> None:
    cluster = pg_env.cluster("unarchived", archive_mode="off")
    code, checks = pg_check(pg_env, cluster)
    assert code == 1
    assert failed(checks)["archive_mode"] == (
        "archive_mode is off: set archive_mode = on in postgresql.conf and restart PostgreSQL"
    )


def test_pg_waldump_of_the_server_version_is_required() -> None:
    server_99 = ArchiveSettings("on", "safehold pg wal-push %p", "/", 990000, "1", False)
    finding = _pg_waldump(server_99)
    assert not finding.ok and "install postgresql-client-99" in finding.message
    server_15 = ArchiveSettings("on", "safehold pg wal-push %p", "/", 150000, "1", False)
    assert _pg_waldump(server_15).ok
