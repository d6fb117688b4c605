"""``unlock`` and ``locks``: see who holds the repository, and clear what a dead process left."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import count, err, out, print_json
from safehold.repo.lock import LockInfo, list_locks, remove_locks

__all__ = ["locks", "unlock"]


def _lock_doc(lock: LockInfo) -> dict[str, object]:
    return {
        "id": lock.id,
        "exclusive": lock.exclusive,
        "time": lock.time,
        "hostname": lock.hostname,
        "username": lock.username,
        "pid": lock.pid,
        "stale": lock.stale(),
    }


@app.command("locks")
def locks(ctx: typer.Context) -> None:
    """List the repository's locks: holder, age, and whether each is stale."""
    s = settings(ctx)
    found = list_locks(s.open_repository(load_index=False))
    if s.json:
        print_json([_lock_doc(lock) for lock in found])
        return
    for lock in found:
        state = "stale" if lock.stale() else "active"
        out().print(f"{lock.id[:8]}  {state:6}  {lock.describe()}", markup=False)
    if not found:
        out().print("no locks")


@app.command("unlock")
def unlock(
    ctx: typer.Context,
    remove_all: Annotated[
        bool,
        typer.Option("--remove-all", help="Remove every lock, also those of running processes."),
    ] = False,
) -> None:
    """Remove stale locks: older than 30 minutes, or of a process gone from this host."""
    s = settings(ctx)
    repo = s.open_repository(load_index=False)
    if remove_all:
        err().print(
            "warning: removing all locks; a backup or prune still running may now be "
            "joined by a prune that removes data it needs",
            markup=False,
        )
    removed = remove_locks(repo, remove_all=remove_all)
    if s.json:
        print_json({"message_type": "unlock", "removed": [_lock_doc(lock) for lock in removed]})
    else:
        for lock in removed:
            out().print(f"removed {lock.describe()}", markup=False)
        out().print(f"removed {count(len(removed), 'lock')}")
