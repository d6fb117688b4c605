"""PostgreSQL test fixtures: one repository, safehold as postgres runs it, clusters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.sources.pg_server import (
    PG_BIN,
    PgCluster,
    init_cluster,
    postgres_dir,
    write_safehold_wrapper,
)


@dataclass
class PgEnv:
    """A scratch directory (postgres can traverse it), a repository and how to run safehold."""

    base: Path
    repo: Path
    password_file: Path
    wrapper: Path
    clusters: list[PgCluster]

    @property
    def safehold_args(self) -> list[str]:
        return ["--repo", str(self.repo), "--password-file", str(self.password_file)]

    @property
    def archive_command(self) -> str:
        return f"{self.wrapper} {' '.join(self.safehold_args)} --quiet pg wal-push %p"

    def run(
        self,
        *args: str | os.PathLike[str],
        check: bool = True,
        timeout: float = 300,
        repo: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """safehold with this repository (or ``repo``, e.g. a replica's location)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
        env |= extra_env or {}
        where = ["--repo", repo, "--password-file", str(self.password_file)] if repo else []
        proc = subprocess.run(
            [sys.executable, "-m", "safehold", *(where or self.safehold_args), *map(str, args)],
            capture_output=True,
            env=env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"safehold {' '.join(map(str, args))} exited {proc.returncode}:\n"
                f"{proc.stderr.decode(errors='replace')}"
            )
        return proc

    def json(self, *args: str | os.PathLike[str]) -> Any:
        return json.loads(self.run("--json", *args).stdout)

    def cluster(self, name: str, archive_command: str | None = None, **settings: str) -> PgCluster:
        cluster = init_cluster(self.base, name, archive_command or self.archive_command, **settings)
        self.clusters.append(cluster)
        cluster.start()
        return cluster

    def restore(
        self,
        target: str,
        *args: str,
        start: bool = True,
        check: bool = True,
        repo: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> tuple[PgCluster, subprocess.CompletedProcess[bytes]]:
        """``pg restore`` into base/target on a free port; the cluster is stopped at teardown."""
        from tests.sources.pg_server import free_port

        cluster = PgCluster(self.base / target, free_port(), self.base)
        self.clusters.append(cluster)
        extra = ["--start", "--connect-host", str(self.base)] if start else []
        proc = self.run(
            "--json",
            "pg",
            "restore",
            *args,
            "--target-dir",
            cluster.pgdata,
            "--port",
            str(cluster.port),
            "--safehold-command",
            str(self.wrapper),
            *extra,
            check=check,
            timeout=600,
            repo=repo,
            extra_env=extra_env,
        )
        return cluster, proc

    def backup(self, cluster: PgCluster, kind: str) -> Any:
        return self.json(
            "pg", "backup", "--type", kind, "--pgdata", cluster.pgdata, "--dsn", cluster.conninfo
        )


@contextmanager
def pg_environment() -> Iterator[PgEnv]:
    """A PgEnv whose clusters are stopped at the end (the fixture below; bench/ too)."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(
            f"PostgreSQL 15 server binaries missing in {PG_BIN} (apt-get install postgresql-15)"
        )
    with postgres_dir() as base:
        repo = base / "repo"
        Repository.init(LocalStore(repo), PASSWORD, CHEAP_KDF, pack_size=4 << 20)
        password_file = base / "password"
        password_file.write_bytes(PASSWORD)
        for path in (repo, password_file, *repo.rglob("*")):
            os.chown(path, _pg_uid(), _pg_uid())
        env = PgEnv(base, repo, password_file, write_safehold_wrapper(base / "safehold"), [])
        try:
            yield env
        finally:
            for cluster in reversed(env.clusters):
                cluster.stop("immediate")


@pytest.fixture(scope="module")
def pg_env() -> Iterator[PgEnv]:
    with pg_environment() as env:
        yield env


def _pg_uid() -> int:
    import pwd

    return pwd.getpwnam("postgres").pw_uid
