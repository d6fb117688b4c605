"""Entry point: the only place that turns errors into messages and exit codes.

Exit codes: 0 success; 1 failure; 3 snapshot made but some files could not be read;
10 repository missing; 12 wrong password; 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from safehold.cli import backup_cmd, browse_cmd, repo_cmd, restore_cmd, snapshots_cmd
from safehold.cli.app import app
from safehold.cli.output import err_console
from safehold.errors import Interrupted, SafeholdError

__all__ = ["run"]

_COMMANDS = (backup_cmd, browse_cmd, repo_cmd, restore_cmd, snapshots_cmd)  # they register
GLOBAL_FLAGS = {"--json", "--quiet", "-q"}
GLOBAL_OPTIONS = {"--repo", "-r", "--password-file", "-p"}


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


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted()


def run(argv: list[str] | None = None) -> None:
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app(args=args, prog_name="safehold")
    except SafeholdError as exc:
        err_console.print(f"safehold: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        err_console.print(f"safehold: {exc.strerror or exc}: {exc.filename or ''}", markup=False)
        sys.exit(1)
