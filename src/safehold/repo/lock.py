"""Repository locks: shared for backup, restore and check; exclusive for prune.

A lock is a sealed JSON document ``locks/<id>`` naming its holder (host, PID, process start
time, boot id). It is taken by writing it and then listing the others: if a conflicting lock
shows up (exclusive against anything, shared against exclusive), ours is removed again and
the caller fails or retries. Two racing lockers may thus both back off, never both win.

A holder rewrites its lock every ``refresh`` seconds. Others treat a lock as stale when its
time is older than ``stale_after``, or, on the same host and boot, when its process is gone.
A holder that could not refresh for ``stale_after`` stops before its next irreversible step
(``ensure_held``): by then a prune elsewhere may have taken the repository (restic's rule).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from safehold.errors import CorruptObject, LockLost, NotFound, RepositoryLocked, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time, parse_time

__all__ = ["LockInfo", "RepoLock", "acquire", "list_locks", "remove_locks"]

REFRESH_INTERVAL = 300.0  # restic: 5 minutes
STALE_AFTER = 1800.0  # restic: 30 minutes
MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class LockInfo:
    time: str
    exclusive: bool
    hostname: str
    username: str
    pid: int
    process_start: int  # clock ticks since boot (/proc/PID/stat field 22): PIDs get reused
    boot_id: str
    id: str = ""

    @classmethod
    def mine(cls, exclusive: bool) -> LockInfo:
        pid = os.getpid()
        return cls(
            time=format_time(datetime.now(UTC)),
            exclusive=exclusive,
            hostname=socket.gethostname(),
            username=_username(),
            pid=pid,
            process_start=_process_start(pid) or 0,
            boot_id=_boot_id(),
        )

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        del doc["id"]
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, lock_id: str) -> LockInfo:
        try:
            doc = json.loads(raw)
            info = cls(
                time=str(doc["time"]),
                exclusive=bool(doc["exclusive"]),
                hostname=str(doc["hostname"]),
                username=str(doc.get("username", "")),
                pid=int(doc["pid"]),
                process_start=int(doc.get("process_start", 0)),
                boot_id=str(doc.get("boot_id", "")),
                id=lock_id,
            )
            parse_time(info.time)
            return info
        except (ValueError, KeyError, TypeError, SafeholdError) as exc:
            raise CorruptObject(f"locks/{lock_id}", f"not a lock ({exc})") from None

    @property
    def kind(self) -> str:
        return "exclusive" if self.exclusive else "shared"

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - parse_time(self.time)

    def stale(self, stale_after: float = STALE_AFTER, now: datetime | None = None) -> bool:
        """Too old, or (on this host, since this boot) its process no longer runs."""
        if self.age(now).total_seconds() > stale_after:
            return True
        if self.hostname != socket.gethostname():
            return False
        if self.boot_id and self.boot_id != _boot_id():
            return True
        start = _process_start(self.pid)
        return start is None or (self.process_start != 0 and start != self.process_start)

    def conflicts_with(self, exclusive: bool) -> bool:
        return exclusive or self.exclusive

    def describe(self) -> str:
        age = int(self.age().total_seconds())
        return (
            f"{self.kind} lock {self.id[:8]} held by PID {self.pid} on {self.hostname} "
            f"({self.username or 'unknown user'}) since {self.time} ({age} s ago)"
        )


def list_locks(repo: Repository) -> list[LockInfo]:
    """Every readable lock; one deleted or damaged while we read it counts as none."""
    locks = []
    for info in repo.store.list("locks/"):
        lock_id = info.key.removeprefix("locks/")
        try:
            locks.append(LockInfo.from_bytes(repo.load_document("locks", lock_id), lock_id))
        except (NotFound, CorruptObject):
            continue
    return locks


def remove_locks(repo: Repository, remove_all: bool = False) -> list[LockInfo]:
    """Remove stale locks, or every lock; returns what was removed."""
    removed = []
    for lock in list_locks(repo):
        if remove_all or lock.stale():
            try:
                repo.store.delete(f"locks/{lock.id}")
            except NotFound:
                continue
            removed.append(lock)
    return removed


class RepoLock:
    """A held lock: refreshed in the background until released (a context manager)."""

    def __init__(
        self,
        repo: Repository,
        exclusive: bool,
        refresh: float = REFRESH_INTERVAL,
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.repo = repo
        self.exclusive = exclusive
        self.refresh = refresh
        self.stale_after = stale_after
        self.lock_id = ""
        self._refreshed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def try_take(self) -> None:
        """Write our lock, then look for conflicting ones; raise RepositoryLocked if any."""
        self._raise_on_conflict()
        self.lock_id = self._write()
        try:
            self._raise_on_conflict()
        except BaseException:
            self._delete(self.lock_id)
            self.lock_id = ""
            raise
        self._thread = threading.Thread(target=self._refresh_loop, name="lock-refresh", daemon=True)
        self._thread.start()

    def ensure_held(self) -> None:
        """Raise LockLost if the lock may have lapsed: call before each irreversible step."""
        with self._mutex:
            silent_for = time.monotonic() - self._refreshed
            lock_id = self.lock_id
        if silent_for > self.stale_after:
            raise LockLost(f"not refreshed for {int(silent_for)} s")
        try:
            self.repo.store.stat(f"locks/{lock_id}")
        except NotFound:
            raise LockLost(f"locks/{lock_id[:8]} was removed by someone else") from None

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lock_id:
            self._delete(self.lock_id)
            self.lock_id = ""

    def __enter__(self) -> RepoLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _raise_on_conflict(self) -> None:
        for lock in list_locks(self.repo):
            mine = lock.id == self.lock_id
            if (
                not mine
                and lock.conflicts_with(self.exclusive)
                and not lock.stale(self.stale_after)
            ):
                raise RepositoryLocked(
                    f"{lock.describe()}; if that process is gone, "
                    "`safehold unlock` removes stale locks"
                )

    def _write(self) -> str:
        lock_id = self.repo.save_document("locks", LockInfo.mine(self.exclusive).to_bytes())
        with self._mutex:
            self._refreshed = time.monotonic()
        return lock_id

    def _delete(self, lock_id: str) -> None:
        with contextlib.suppress(SafeholdError, OSError):  # a lock left behind goes stale
            self.repo.store.delete(f"locks/{lock_id}")

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh):
            old = self.lock_id
            try:
                new = self._write()
            except (SafeholdError, OSError):
                continue  # ensure_held notices if this goes on too long
            with self._mutex:
                self.lock_id = new
            if new != old:
                self._delete(old)


def acquire(
    repo: Repository,
    exclusive: bool,
    retry_for: float = 0.0,
    refresh: float = REFRESH_INTERVAL,
    stale_after: float = STALE_AFTER,
) -> RepoLock:
    """Take a lock, retrying with growing delays for up to ``retry_for`` seconds."""
    deadline = time.monotonic() + retry_for
    delay = 1.0
    while True:
        lock = RepoLock(repo, exclusive, refresh, stale_after)
        try:
            lock.try_take()
            return lock
        except RepositoryLocked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            time.sleep(min(delay, remaining) * (0.5 + _jitter()))
            delay = min(delay * 2, MAX_RETRY_DELAY)


def _jitter() -> float:
    return int.from_bytes(os.urandom(2), "big") / 65535


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> int | None:
    """The start time of a running process, or None if there is no such process."""
    if not os.path.isdir("/proc/self"):  # no procfs: only ask whether the PID exists
        return _pid_exists(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0  # exists but unreadable: alive, start unknown
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    state = fields[0] if fields else b""
    if state in (b"Z", b"X"):  # a zombie holds no lock
        return None
    return int(fields[19]) if len(fields) > 19 else 0


def _pid_exists(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0
