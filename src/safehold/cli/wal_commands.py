"""``pg wal-push`` and ``pg wal-fetch`` as PostgreSQL's archive_command and
restore_command call them, answered without Typer.

PostgreSQL waits for these at every WAL segment, and a promotion waits for
restore_command two or three times (the segment it was waiting for, the next timeline's
history file, the old one's) before it accepts writes; a switchover's old primary
archives its last segment before it hands over. Building the CLI (importing Typer and
turning every ``pg`` command into a Click command) cost 0.18 s of CPU per call against
0.13 s for this path, and a call took 0.7-1.5 s of wall time on a loaded 2-core machine.
Only the plain shapes that safehold writes into those commands are taken here:
``--repo``, ``--password-file``, the flags that do not change a fetch or a push,
``pg wal-fetch NAME PATH [--system-id ID] [--pgdata DIR]`` and
``pg wal-push PATH [--primary] [--pgdata DIR]``. Anything else (help, ``--json``,
``--spool``, an option written ``--x=y``) returns None and goes the usual way.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from safehold.cli.context import Settings

__all__ = ["fast_wal_command", "fetch_to", "push_from"]

# global option: Settings field (None: read elsewhere, e.g. --verbose by cli/main.py)
_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--no-lock": "no_lock", "--no-cache": "no_cache",
          "--no-key-cache": "no_key_cache", "--verbose": None}  # fmt: skip
_VALUES = {"--repo": "repo", "-r": "repo", "--password-file": "password_file",
           "-p": "password_file"}  # fmt: skip
# command: (its options with a value, its flags, how many arguments)
_COMMANDS = {
    "wal-fetch": ({"--system-id": "system_id", "--pgdata": "pgdata", "-D": "pgdata"}, {}, 2),
    "wal-push": ({"--pgdata": "pgdata", "-D": "pgdata"}, {"--primary": "primary"}, 1),
}


def fetch_to(settings: Settings, name: str, path: str, system_id: str | None, pgdata: str) -> None:
    """restore_command: write archived WAL file ``name`` to ``path`` (relative to
    ``pgdata``), atomically."""
    from safehold.sources.postgres.walarchive import fetch_wal
    from safehold.sources.postgres.walnames import read_system_id

    repo = settings.open_repository(load_index=False, key_cache=True)
    data = fetch_wal(repo, system_id or read_system_id(pgdata), name)
    full = path if os.path.isabs(path) else os.path.join(pgdata, path)
    tmp = f"{full}.safehold-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, full)


def push_from(settings: Settings, path: str, pgdata: str, primary: bool) -> None:
    """archive_command: store WAL file ``path`` (relative to ``pgdata``); ``primary``: a
    timeline history file it stores makes that timeline production's (unless this cluster
    is a standby re-archiving it)."""
    from safehold.sources.postgres.lineage import claim_timeline, timeline_to_claim
    from safehold.sources.postgres.walarchive import push_wal
    from safehold.sources.postgres.walnames import read_system_id

    system_id = read_system_id(pgdata)
    full = path if os.path.isabs(path) else os.path.join(pgdata, path)
    with open(full, "rb") as f:
        data = f.read()
    repo = settings.open_repository(load_index=False, key_cache=True)
    name = os.path.basename(path)
    outcome = push_wal(repo, system_id, name, data)
    claim = timeline_to_claim(pgdata, name) if primary else None
    if claim is not None:
        claim_timeline(repo, system_id, claim)
    if outcome == "refused-partial":  # a warning for PostgreSQL's log, even with --quiet
        sys.stderr.write(
            f"safehold: {name} differs from the archived copy, which is kept (recovery never"
            " reads a .partial); refused, recorded for `pg status`, archiving goes on\n"
        )
    elif not settings.quiet and outcome == "present":
        sys.stderr.write(f"safehold: {name} was already archived (same content)\n")


def fast_wal_command(args: list[str]) -> int | None:
    """Run ``args`` (global options hoisted in front) if they are a plain ``pg wal-fetch``
    or ``pg wal-push``; None when they are anything else."""
    i, settings = _global_options(args)
    if settings is None or args[i : i + 1] != ["pg"] or args[i + 1 : i + 2] == []:
        return None
    command = args[i + 1]
    if command not in _COMMANDS:
        return None
    values, flags, count = _COMMANDS[command]
    own: dict[str, Any] = {"pgdata": ".", "system_id": None, "primary": False}
    positional: list[str] = []
    rest = args[i + 2 :]
    j = 0
    while j < len(rest):
        if rest[j] in values and j + 1 < len(rest):
            own[values[rest[j]]] = rest[j + 1]
            j += 2
        elif rest[j] in flags:
            own[flags[rest[j]]] = True
            j += 1
        elif rest[j].startswith("-"):
            return None
        else:
            positional.append(rest[j])
            j += 1
    if len(positional) != count:
        return None
    try:
        if command == "wal-fetch":
            fetch_to(settings, positional[0], positional[1], own["system_id"], own["pgdata"])
        else:
            push_from(settings, positional[0], own["pgdata"], own["primary"])
    finally:
        settings.close()
    return 0


def _global_options(args: list[str]) -> tuple[int, Settings | None]:
    """Where the command starts, and the settings of the options before it (None when one
    of them is not a plain global option)."""
    fields: dict[str, Any] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in _FLAGS:
            if (field := _FLAGS[args[i]]) is not None:
                fields[field] = True
            i += 1
        elif args[i] in _VALUES and i + 1 < len(args):
            fields[_VALUES[args[i]]] = args[i + 1]
            i += 2
        else:
            return i, None
    return i, Settings(**fields)
