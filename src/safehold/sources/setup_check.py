"""What `pg check` and `mysql check` share: one finding per check, each failure saying in
one line what to change, and the checks that do not depend on the database."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safehold.errors import SafeholdError
from safehold.repo.lock import acquire
from safehold.repo.repository import Repository

__all__ = ["Finding", "os_user", "program_found", "repository_writable", "same_user"]


@dataclass(frozen=True)
class Finding:
    """One check: ``ok``, and what was found (or, when not ok, what to change)."""

    name: str
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "message": self.message}


def os_user() -> str:
    """The name of the user this process runs as."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def same_user(name: str, path: str, what: str) -> Finding:
    """Whether we run as the owner of ``path`` (the database's data directory): the
    database runs safehold as that user, so what we find must hold for that user."""
    try:
        owner = pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (OSError, KeyError) as exc:
        return Finding(name, False, f"cannot see who owns {path}: {exc}")
    me = os_user()
    if owner != me:
        return Finding(
            name,
            False,
            f"running as {me}, but {what} runs as {owner}: run this check as {owner}"
            f" (e.g. runuser -u {owner} -- safehold …), so that it sees what {what} sees",
        )
    return Finding(name, True, f"running as {me}, the user {what} runs as")


def program_found(name: str, path: str | None, package: str, needed_for: str) -> Finding:
    """An external program that safehold needs later (finding it late costs a restore)."""
    if path and os.access(path, os.X_OK):
        return Finding(name, True, f"{path}")
    where = f" at {path}" if path else " on PATH"
    return Finding(name, False, f"not found{where}: install {package} ({needed_for})")


def repository_writable(open_repo: Callable[[], Repository]) -> tuple[Finding, Repository | None]:
    """Open the repository and take and release a lock: both a read and a write."""
    name = "repository"
    try:
        repo = open_repo()
        with acquire(repo, exclusive=False):
            pass
    except (SafeholdError, OSError) as exc:
        detail = str(exc)
        if isinstance(exc, OSError):
            detail = f"{exc.strerror or exc}: {exc.filename}"
        return Finding(
            name,
            False,
            f"{detail} (as user {os_user()}): make the repository and its password file"
            f" readable and writable by {os_user()}",
        ), None
    return Finding(name, True, f"{repo.store.location} opens and takes a lock as {os_user()}"), repo
