"""The one way safehold runs an external program (pg_dump, pg_ctl, mariadb-dump, ...).

Every call is logged, its output can be streamed, and a failure raises
``ExternalCommandFailed`` with the exit code and the last lines of its stderr, so the CLI
prints one clear line. ``run`` waits for the program; ``stream`` hands its stdout to the
caller as a pipe (a dump going straight into the repository, without temporary files).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO

from safehold.errors import SafeholdError

__all__ = ["ExternalCommandFailed", "ProgramMissing", "as_user", "run", "spawn", "stream"]

log = logging.getLogger("safehold.external")
STDERR_TAIL_LINES = 5


class ExternalCommandFailed(SafeholdError):
    """{0} exited with code {1}: {2}"""


class ProgramMissing(SafeholdError):
    """Program {0!r} not found: {1}"""


def as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``user`` (via runuser) when we are root and the user differs."""
    if user is None or os.geteuid() != 0 or user == "root":
        return list(argv)
    return ["runuser", "-u", user, "--", *argv]


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to the end; raise with its stderr tail when it fails."""
    log.info("running %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise ProgramMissing(argv[0], exc.strerror) from None
    except subprocess.TimeoutExpired:
        raise ExternalCommandFailed(argv[0], "none", f"timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        raise ExternalCommandFailed(_name(argv), proc.returncode, _tail(proc.stderr))
    return proc


def spawn(argv: Sequence[str]) -> int:
    """Start a server that outlives safehold (its own session, no pipes); its pid."""
    log.info("starting %s", shlex.join(argv))
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ProgramMissing(argv[0], exc.strerror) from None
    return proc.pid


@contextmanager
def stream(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | None = None,
    stderr_lines: list[str] | None = None,
) -> Iterator[IO[bytes]]:
    """Run a program and yield its stdout; on leaving, wait and raise if it failed.

    stderr is collected in the background (only its tail is kept, unless the caller
    passes ``stderr_lines`` to receive every line), so a chatty program cannot block on
    a full pipe while the caller reads stdout.
    """
    log.info("streaming %s", shlex.join(argv))
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
        )
    except FileNotFoundError as exc:
        raise ProgramMissing(argv[0], exc.strerror) from None
    assert proc.stdout is not None and proc.stderr is not None
    tail: deque[bytes] = deque(maxlen=STDERR_TAIL_LINES)

    def read_stderr(pipe: IO[bytes]) -> None:
        for line in pipe:
            tail.append(line)
            if stderr_lines is not None:
                stderr_lines.append(line.decode(errors="replace").rstrip("\n"))

    reader = threading.Thread(target=read_stderr, args=(proc.stderr,), daemon=True)
    reader.start()
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        code = proc.wait()
        reader.join()
    if code != 0:
        raise ExternalCommandFailed(_name(argv), code, _tail(b"".join(tail)))


def _name(argv: Sequence[str]) -> str:
    """The program's name, skipping a runuser prefix."""
    if argv and os.path.basename(argv[0]) == "runuser" and "--" in argv:
        argv = argv[list(argv).index("--") + 1 :]
    return os.path.basename(argv[0]) if argv else "?"


def _tail(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_TAIL_LINES:]) or "(no error output)"
