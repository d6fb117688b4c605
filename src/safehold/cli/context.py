"""What every command needs: the repository location, the password, the output mode."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal

from safehold.cli.output import err
from safehold.errors import InvalidArgument, WrongPassword, WrongPasswordFrom
from safehold.repo.cache import DocumentCache
from safehold.repo.keycache import KeyCache
from safehold.repo.keys import DEFAULT_KDF, KdfParams
from safehold.repo.lock import RepoLock, acquire
from safehold.repo.repository import Repository
from safehold.storage import ObjectStore, open_store

__all__ = ["Settings", "parse_wait"]

EMPTY_PASSWORD = "an empty password is not allowed"
# Where the password is taken from, first found first (README "Using it"): a file, then a
# command, then the variable, then a prompt on a terminal.
PASSWORD_VARIABLES = ("SAFEHOLD_PASSWORD_FILE", "SAFEHOLD_PASSWORD_COMMAND", "SAFEHOLD_PASSWORD")


@dataclass
class Settings:
    repo: str | None = None
    password_file: str | None = None
    json: bool = False
    quiet: bool = False
    retry_lock: float = 0.0
    no_lock: bool = False
    no_cache: bool = False
    no_key_cache: bool = False
    connections: int | None = None  # None: the store's default
    resources: ExitStack = field(default_factory=ExitStack)
    lock: RepoLock | None = None
    password_origin: str = "the prompt"  # where the last password read came from
    password_in_file: bool = False  # the last password read came from a file

    def location(self) -> str:
        location = self.repo or os.environ.get("SAFEHOLD_REPOSITORY")
        if not location:
            raise InvalidArgument("no repository given: use --repo or SAFEHOLD_REPOSITORY")
        return location

    def open_store(self, location: str | None = None) -> ObjectStore:
        """The repository's store (or another location's), with ``--connections`` applied."""
        return open_store(location or self.location(), self.connections)

    def password(self, confirm: bool = False) -> bytes:
        """The password; ``confirm`` when it is for a new repository (asked twice, never empty)."""
        password = self._read_password(confirm)
        if confirm and not password:  # e.g. SAFEHOLD_PASSWORD set from an unset variable
            raise InvalidArgument(EMPTY_PASSWORD)
        return password

    def _read_password(self, confirm: bool) -> bytes:
        """From --password-file, SAFEHOLD_PASSWORD_FILE, SAFEHOLD_PASSWORD_COMMAND,
        SAFEHOLD_PASSWORD, or a prompt on a terminal: the first one given wins."""
        path = self.password_file or os.environ.get("SAFEHOLD_PASSWORD_FILE")
        if path:
            flag = "--password-file" if self.password_file else "SAFEHOLD_PASSWORD_FILE"
            self.password_origin = _origin(f"{flag} {path}", PASSWORD_VARIABLES[1:])
            self.password_in_file = True
            try:
                with open(path, "rb") as f:
                    return f.read().rstrip(b"\r\n")
            except OSError as exc:
                raise InvalidArgument(f"cannot read password file {path}: {exc.strerror}") from None
        command = os.environ.get("SAFEHOLD_PASSWORD_COMMAND")
        if command:
            self.password_origin = _origin("SAFEHOLD_PASSWORD_COMMAND", PASSWORD_VARIABLES[2:])
            return _run_password_command(command)
        if "SAFEHOLD_PASSWORD" in os.environ:
            self.password_origin = "SAFEHOLD_PASSWORD"
            return os.environ["SAFEHOLD_PASSWORD"].encode()
        self.password_origin = "the prompt"
        return prompt_password("Repository password: ", confirm=confirm)

    def open_repository(
        self,
        load_index: bool = True,
        lock: Literal["shared", "exclusive"] | None = None,
        key_cache: bool = False,
    ) -> Repository:
        """Open, lock (held until the command ends: see ``close``), then load the index.

        The lock comes before the index, so a prune that finished just before cannot leave
        us an index naming packs it deleted. ``key_cache``: a command run once per WAL file
        may use the per-user key cache (repo/keycache.py), when ``use_key_cache`` allows.
        """
        location = self.location()
        store = self.open_store(location)
        password = self.password()
        cache = KeyCache.default() if key_cache and self.use_key_cache() else None
        try:
            repo = Repository.open(store, password, cache)
        except WrongPassword:
            raise WrongPasswordFrom(location, self.password_origin) from None
        finally:
            for warning in cache.warnings if cache is not None else []:
                err().print(f"warning: {warning}", markup=False)
        if "://" in location and not self.no_cache:  # a local repository needs no cache
            repo.cache = DocumentCache.for_repository(repo.config.id)
        if lock == "exclusive" or (lock == "shared" and not self.no_lock):
            self.lock = self.resources.enter_context(
                acquire(repo, lock == "exclusive", retry_for=self.retry_lock)
            )
        if load_index:
            repo.load_index()
            for damage in repo.damaged_indexes:  # the others still serve; never silently
                err().print(f"warning: {damage}; skipped", markup=False)
        return repo

    def use_key_cache(self) -> bool:
        """SAFEHOLD_KEY_CACHE=off (or --no-key-cache) never, =on always; by default only
        when the password was read from a file: the cache then gives its reader no more
        than that file gives the same user (docs/FORMAT.md, "Key cache")."""
        setting = os.environ.get("SAFEHOLD_KEY_CACHE", "auto").lower()
        if self.no_key_cache or setting == "off":
            return False
        if setting not in ("auto", "on"):
            raise InvalidArgument(f"SAFEHOLD_KEY_CACHE={setting!r}: use on, off or auto")
        return setting == "on" or self.password_in_file

    def ensure_locked(self) -> None:
        """Before an irreversible step: fail if the lock this command holds has lapsed."""
        if self.lock is not None:
            self.lock.ensure_held()

    def close(self) -> None:
        """Release what the command held (its lock); runs however the command ended."""
        self.resources.close()


def prompt_password(prompt: str, confirm: bool = False) -> bytes:
    if not (sys.stdin.isatty() or _has_tty()):
        raise InvalidArgument(
            "no password given: set SAFEHOLD_PASSWORD, SAFEHOLD_PASSWORD_FILE or "
            "SAFEHOLD_PASSWORD_COMMAND, or use --password-file"
        )
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Enter the password again: ") != first:
        raise InvalidArgument("the passwords do not match")
    if not first:
        raise InvalidArgument(EMPTY_PASSWORD)
    return first.encode()


def new_password(path: str | None) -> bytes:
    """A new password (init, key add, key passwd): from a file, or asked twice."""
    if path:
        try:
            with open(path, "rb") as f:
                password = f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise InvalidArgument(f"cannot read password file {path}: {exc.strerror}") from None
        if not password:
            raise InvalidArgument(f"{EMPTY_PASSWORD} (the file {path} is empty)")
        return password
    if not (sys.stdin.isatty() or _has_tty()):
        raise InvalidArgument("no new password given: use --new-password-file, or a terminal")
    return prompt_password("New password: ", confirm=True)


_WAIT_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_wait(text: str) -> float:
    """A short duration: a number with s, m or h (``90s``, ``10m``); a bare number is seconds."""
    unit = text[-1:].lower()
    number = text[:-1] if unit in _WAIT_UNITS else text
    try:
        seconds = float(number) * _WAIT_UNITS.get(unit, 1)
    except ValueError:
        raise InvalidArgument(f"invalid duration {text!r}: use e.g. 30s, 10m or 1h") from None
    if seconds < 0:
        raise InvalidArgument(f"invalid duration {text!r}: must not be negative")
    return seconds


def kdf_params(memory_kib: int | None, iterations: int | None) -> KdfParams:
    return KdfParams(
        memory=memory_kib or DEFAULT_KDF.memory,
        iterations=iterations or DEFAULT_KDF.iterations,
        parallelism=DEFAULT_KDF.parallelism,
    )


def _origin(used: str, also_set: tuple[str, ...]) -> str:
    """``used``, naming the variables that are set too but come later."""
    ignored = [name for name in also_set if name in os.environ]
    if not ignored:
        return used
    verb = "is set too but comes" if len(ignored) == 1 else "are set too but come"
    return f"{used} ({' and '.join(ignored)} {verb} later)"


def _has_tty() -> bool:
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def _run_password_command(command: str) -> bytes:
    try:
        out = subprocess.run(command, shell=True, check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        tail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        detail = f": {tail[0]}" if tail else ""
        raise InvalidArgument(f"password command failed (exit {exc.returncode}){detail}") from None
    except subprocess.TimeoutExpired:
        raise InvalidArgument("password command timed out after 60 s") from None
    return out.stdout.rstrip(b"\r\n")
