"""Run one safehold command as a child process of the daemon.

Each job is a separate ``safehold`` process, so a job that crashes, leaks or hangs never
takes the daemon with it, and every guarantee of the command line (locks, no snapshot
before its data and index are stored, exit codes) holds for scheduled runs too. Children
are bound to the daemon with ``PR_SET_PDEATHSIG``: when the daemon is killed (even with
SIGKILL) its jobs are killed as well, so no orphan finishes a run that the next daemon,
seeing it interrupted, runs again: nothing is done twice.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from safehold.dr.jobs import JobCommand
from safehold.service.http.redact import Redactor

__all__ = ["ChildProcess", "CommandResult", "run_command", "start_child"]

_PR_SET_PDEATHSIG = 1
STDERR_TAIL_LINES = 20
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def _bind_to_parent() -> None:
    """In the child, before exec: die with SIGKILL when the daemon thread that started us
    dies (Linux only; elsewhere children may outlive a killed daemon)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    os.setpgid(0, 0)  # its own group: a terminal's Ctrl-C reaches the daemon only


def _priority(command: JobCommand) -> list[str]:
    """``nice`` and ``ionice`` (idle-most best effort) before a low-priority command."""
    if not command.low_priority:
        return []
    prefix = ["nice", "-n", "19"]
    if shutil.which("ionice"):
        prefix += ["ionice", "-c", "2", "-n", "7"]
    return prefix


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    summary: dict[str, Any] | None  # the last JSON object the command printed
    error: str | None  # the last line of stderr when it failed
    timed_out: bool = False  # cut by the daemon at the job's time limit

    @property
    def outcome(self) -> str:
        if self.returncode == 0:
            return "success"
        if self.returncode == EXIT_PARTIAL:
            return "partial"
        if self.returncode in (EXIT_INTERRUPTED, -signal.SIGINT, -signal.SIGKILL):
            return "cancelled"
        return "failed"


class ChildProcess:
    """A running safehold command; its stdout and stderr are drained by threads so that a
    chatty command can never block on a full pipe."""

    def __init__(self, command: JobCommand, extra_args: list[str]) -> None:
        self.argv = [*extra_args, *command.argv]
        env = {**os.environ, **command.env}
        self.process = subprocess.Popen(
            [*_priority(command), sys.executable, "-m", "safehold", *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_bind_to_parent,
        )
        self._stdout: deque[bytes] = deque(maxlen=200)
        self._stderr: deque[bytes] = deque(maxlen=STDERR_TAIL_LINES)
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self._stdout)),
            threading.Thread(target=self._drain, args=(self.process.stderr, self._stderr)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    @staticmethod
    def _drain(stream: Any, into: deque[bytes]) -> None:
        for line in stream:
            into.append(line)
        stream.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def interrupt(self) -> None:
        """Ask the command to stop as after Ctrl-C: it exits 130 and writes no snapshot."""
        self._signal(signal.SIGINT)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> CommandResult:
        returncode = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return CommandResult(self.argv, returncode, self._summary(), self._error(returncode))

    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def _summary(self) -> dict[str, Any] | None:
        for line in reversed(self._stdout):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                return doc
        return None

    def _error(self, returncode: int) -> str | None:
        if returncode == 0:
            return None
        lines = [x.strip() for x in self.stderr_tail().splitlines() if x.strip()]
        if lines:
            return Redactor().text(lines[-1])[:500]  # a DSN's password never reaches the history
        if returncode < 0:
            return f"killed by signal {signal.Signals(-returncode).name}"
        return f"exited {returncode}"


def start_child(command: JobCommand, extra_args: list[str] | None = None) -> ChildProcess:
    return ChildProcess(command, extra_args or [])


def run_command(command: JobCommand, extra_args: list[str] | None = None) -> CommandResult:
    """Run ``command`` to its end (for tests and one-off runs)."""
    return start_child(command, extra_args).wait()
