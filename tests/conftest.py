"""Fixtures shared by every layer's tests: cheap keys, repositories, the CLI as a user runs it."""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from safehold.repo.keys import KdfParams
from safehold.repo.repository import Repository
from safehold.storage import LocalStore, MemoryStore
from tests.servers import AzureServer, S3Server, run_azurite, run_seaweedfs

PASSWORD = b"correct horse battery staple"
CHEAP_KDF = KdfParams(memory=256, iterations=1, parallelism=1)
SAFEHOLD = [sys.executable, "-m", "safehold"]
SRC = Path(__file__).resolve().parents[1] / "src"


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile safehold once, and let the commands the tests start use the caches.

    An environment with PYTHONDONTWRITEBYTECODE (as on this project's test machines) made
    every ``python -m safehold`` compile the package from source again: thousands of
    commands per run, ~0.05-0.2 s of CPU each. The compiled files also serve the commands
    that run as postgres or mysql, who cannot write next to the sources.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(SRC, quiet=1)


@pytest.fixture
def memory_repo() -> Repository:
    """A repository in memory, small packs so tests see several."""
    return Repository.init(MemoryStore(), PASSWORD, CHEAP_KDF, pack_size=256 * 1024)


@pytest.fixture
def local_repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalStore(tmp_path / "repo"), PASSWORD, CHEAP_KDF, pack_size=1 << 20)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session; tests take a fresh bucket each."""
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    """One Azurite blob service for the session; tests take a fresh container each."""
    with run_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@dataclass
class CLI:
    """Runs ``safehold`` in a subprocess against one repository, as a user would."""

    repo: Path
    env: dict[str, str]

    def run(
        self, *args: str | os.PathLike[str], input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            [*SAFEHOLD, *map(str, args)],
            input=input,
            capture_output=True,
            env=self.env,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"safehold {' '.join(map(str, args))} exited {proc.returncode}:\n"
                f"{proc.stderr.decode(errors='replace')}"
            )
        return proc

    def init(self) -> None:
        self.run("init", "--kdf-memory", "256", "--kdf-iterations", "1")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env.update(
        SAFEHOLD_REPOSITORY=str(tmp_path / "repo"),
        SAFEHOLD_PASSWORD=PASSWORD.decode(),
        COLUMNS="200",
    )
    yield CLI(tmp_path / "repo", env)
