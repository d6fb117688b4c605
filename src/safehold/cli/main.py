"""Entry point: the only place that turns errors into messages and exit codes.

Exit codes: 0 success; 1 failure; 3 snapshot made but some files could not be read;
5 `status`: a service outside its objectives; 6 `recover`: back, but a health check
failed; 7 `drill`: a data check failed; 8 `drill`: the data is right, an objective missed;
10 repository missing (or no copy of it readable); 11 repository locked (or a daemon
already running the policy); 12 wrong password; 130 interrupted (Ctrl-C, SIGTERM
or SIGHUP, as restic exits 130 on an interrupt).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

from safehold.errors import Interrupted, SafeholdError

# Only light imports up here: the commands (typer, rich, cryptography...) take ~0.15 s to
# import, and run() installs the signal handlers first, so an early Ctrl-C exits 130 too.

__all__ = ["run"]

EXIT_USAGE = 1  # as restic: a usage error is a failure like any other
SWITCH_INTERVAL = 0.0005
GLOBAL_FLAGS = {"--json", "--quiet", "-q", "--no-lock", "--no-cache", "--no-key-cache", "--verbose"}
COMMAND_MODULES = {
    "backup": "backup_cmd",
    "snapshots": "snapshots_cmd",
    "ls": "browse_cmd",
    "diff": "browse_cmd",
    "dump": "browse_cmd",
    "stats": "browse_cmd",
    "find": "find_cmd",
    "tag": "tag_cmd",
    "cat": "cat_cmd",
    "rewrite": "rewrite_cmd",
    "mount": "mount_cmd",
    "init": "repo_cmd",
    "key": "repo_cmd",
    "restore": "restore_cmd",
    "forget": "forget_cmd",
    "check": "check_cmd",
    "repair": "check_cmd",
    "pg": "pg_cmd",
    "sqlite": "sqlite_cmd",
    "mysql": "mysql_cmd",
    "redis": "redis_cmd",
    "replicate": "replicate_cmd",
    "prune": "prune_cmd",
    "locks": "lock_cmd",
    "unlock": "lock_cmd",
    "plan": "plan_cmd",
    "status": "status_cmd",
    "daemon": "daemon_cmd",
    "jobs": "daemon_cmd",
    "recover": "recover_cmd",
    "cuts": "cuts_cmd",
    "cut": "cuts_cmd",
    "runbook": "runbook_cmd",
    "drill": "drill_cmd",
    "drills": "drill_cmd",
    "serve": "serve_cmd",
    "standby": "standby_cmd",
}
GLOBAL_OPTIONS = {"--repo", "-r", "--password-file", "-p", "--retry-lock", "--connections"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options given after the command name in front of it (restic style)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_OPTIONS and "=" in arg):
            front.append(arg)
        elif arg in GLOBAL_OPTIONS and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


# What `timeout`, systemd, `kill` and container runtimes send, and a closed terminal: each
# stops a command as Ctrl-C does (locks released, packs written so far indexed, no snapshot).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    # Once: a second signal must not cut the clean-up (indexing written packs, unlocking)
    # short. SIGKILL remains for a clean-up that hangs.
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is _interrupt:
            signal.signal(signum, signal.SIG_IGN)
    raise Interrupted()


def _install_stop_handlers() -> None:
    for signum in STOP_SIGNALS:
        # a SIGHUP ignored by our parent (nohup) stays ignored
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        signal.signal(signum, _interrupt)


def run(argv: list[str] | None = None) -> None:
    _install_stop_handlers()
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    # The walk holds the GIL while zstd/AES/BLAKE3 threads release and retake it; with the
    # default 5 ms switch interval each retake waits, and a first backup ran at 158 MB/s
    # instead of 267 MB/s (db + large files of bench/, 2 cores).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        code = _dispatch(args)
    except SafeholdError as exc:
        if "--verbose" in args:
            _print_causes(exc)
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # Python's own handler, before run() replaced it
        _fail(str(Interrupted()), Interrupted.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        where = f": {os.fsdecode(exc.filename)}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", 1)
    except Exception as exc:
        if type(exc).__name__ == "Abort":  # typer.Abort: EOF at a prompt
            _fail("aborted", 1)
        usage = _usage_error(exc)
        if usage is None:  # a bug: still one line, never a traceback
            _fail(f"internal error: {type(exc).__name__}: {exc}", 1)
        _fail(usage, EXIT_USAGE)
    sys.exit(code)


def _dispatch(args: list[str]) -> int:
    """Import the command modules (they register on ``app``) and run the command.

    Only the module of the command named is imported, since every scheduled run pays for
    start-up; help and unknown names import them all, so that help lists everything
    (``--version`` none).
    """
    name = _command_name(args)
    if name == "pg":  # archive_command, restore_command: PostgreSQL waits (cli/wal_commands.py)
        from safehold.cli.wal_commands import fast_wal_command

        code = fast_wal_command(args)
        if code is not None:
            return code
    modules = [COMMAND_MODULES[name]] if name in COMMAND_MODULES else set(COMMAND_MODULES.values())
    if name is None and "--version" in args:  # answered before any command is looked at
        modules = []
    for module in sorted(modules):
        importlib.import_module(f"safehold.cli.{module}")
    from safehold.cli.app import app, arrange_help

    arrange_help()
    # standalone_mode=False: usage errors come back to run() and become one line too
    code = app(args=args or ["--help"], prog_name="safehold", standalone_mode=False)
    return code if isinstance(code, int) else 0


def _command_name(args: list[str]) -> str | None:
    """The first argument that is neither a global option nor its value."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in GLOBAL_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


def _print_causes(exc: BaseException) -> None:
    """--verbose: what led to the error (e.g. a store client's own text), oldest first."""
    causes = []
    cause = exc.__cause__
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__
    for cause in reversed(causes):
        sys.stderr.write(f"caused by {type(cause).__name__}: {str(cause).strip()}\n")


def _fail(message: str, code: int) -> NoReturn:
    # plain stderr, not rich: this may run before rich is even imported
    sys.stderr.write(f"safehold: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _usage_error(exc: Exception) -> str | None:
    """The message of a Typer/Click usage error (bad option, missing argument), else None."""
    format_message = getattr(exc, "format_message", None)
    if not callable(format_message):
        return None
    message = " ".join(str(format_message()).split())
    command = getattr(getattr(exc, "ctx", None), "command_path", None)
    return f"{message} (see '{command} --help')" if command else message
