"""Running ``safehold daemon`` in tests: a policy in a temp directory, the daemon as a
real process, and waiting on its job history."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safehold.service.history import JobHistory, JobRun
from tests.conftest import PASSWORD
from tests.policy import clean_env

__all__ = [
    "SAFEHOLD",
    "DaemonRun",
    "clean_env",
    "init_repo",
    "safehold_json",
    "write_password",
]

SAFEHOLD = [sys.executable, "-m", "safehold"]


def init_repo(location: str, password_file: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [
            *SAFEHOLD,
            "--repo",
            location,
            "--password-file",
            str(password_file),
            "init",
            "--kdf-memory",
            "256",
            "--kdf-iterations",
            "1",
        ],
        check=True,
        capture_output=True,
        env=env or clean_env(),
    )


@dataclass
class DaemonRun:
    """A daemon process on ``config``; its stderr goes to ``log``."""

    config: Path
    state: Path
    env: dict[str, str] = field(default_factory=clean_env)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self) -> DaemonRun:
        self.log = self.state.parent / f"daemon-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [*SAFEHOLD, "daemon", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def stop(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def history(self) -> JobHistory:
        return JobHistory(self.state / "history.sqlite", readonly=True)

    def runs(self, **filters: Any) -> list[JobRun]:
        if not (self.state / "history.sqlite").exists():
            return []
        h = self.history()
        try:
            return h.runs(limit=1000, **filters)
        except sqlite3.OperationalError:  # the daemon created the file, not yet its tables
            return []
        finally:
            h.close()

    def wait_started(self, timeout: float = 60) -> None:
        """Until the daemon holds its policy's lock and says it started."""
        deadline = time.monotonic() + timeout
        while "daemon started" not in self.text():
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not start within {timeout} s:\n{self.text()}")
            time.sleep(0.1)

    def wait_for(
        self, what: str, condition: Callable[[list[JobRun]], bool], timeout: float = 60
    ) -> list[JobRun]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            if condition(runs):
                return runs
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.text()}")
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; runs:\n{_table(self.runs())}")


def _table(runs: list[JobRun]) -> str:
    return "\n".join(f"{r.id} {r.job} {r.outcome} {r.scheduled_for} {r.error}" for r in runs)


def safehold_json(location: str, password_file: Path, *args: str) -> Any:
    proc = subprocess.run(
        [*SAFEHOLD, "--repo", location, "--password-file", str(password_file), "--json", *args],
        capture_output=True,
        env=clean_env(),
        check=True,
    )
    return json.loads(proc.stdout)


def write_password(path: Path) -> Path:
    path.write_bytes(PASSWORD)
    path.chmod(0o600)
    return path
