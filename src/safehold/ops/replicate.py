"""``replicate``: copy a repository's objects to a replica in another region, and measure lag.

The replica is a byte-for-byte copy of the primary's objects (every prefix but ``locks/``),
so it opens and restores with the same password on its own. What makes it safe:

- **Order.** Objects go in phases: ``keys/``, ``config``, ``data/`` (packs), ``wal/`` and
  ``binlog/`` (archived database logs) and any other prefix, ``index/``, ``snapshots/``; a
  phase starts when the one before it has finished. So a reader of the replica, even while
  replication runs, never sees a snapshot whose index is missing, nor an index whose packs
  are missing. If a phase fails to write something (a store error), the later phases are
  held back for the next run. (Logs also reach the replica between runs: see
  ``ops/replicate_logs.py``.)
- **Listing order.** A backup writes packs, then the index, then the snapshot; the source
  is listed in the opposite order (``snapshots/``, then ``index/``, then everything), so a
  backup running meanwhile cannot make an index or snapshot appear without its packs.
- **Verification.** Content-addressed objects (keys, packs, indexes, snapshots: their name
  is the BLAKE3 of their bytes) are hashed after reading and refused when the hash differs;
  their size on the replica is checked after writing: by one listing of the prefix when
  that costs fewer requests than a HEAD per object (a phase of many packs), else by HEAD.
  Archived logs (sealed, named by segment or binlog file) are authenticated with the
  master key (AES-GCM) after reading. Objects not named by their hash (``config``,
  ``wal/…``, ``binlog/…``) are read back from the replica and compared by hash. A corrupt
  source object is reported and never written; everything else is still copied.
- **Atomic, resumable.** Every write is a create-if-absent put, which both stores make
  atomic (LocalStore: temp file + fsync + link; S3Store: one conditional PUT, never a
  multipart upload), so an interrupted run leaves whole objects only, and the next run
  copies what is still missing. Nothing on the replica is ever overwritten.
- **Deletions** propagate only when asked (``delete=True``), after copying, in reverse
  safety order (snapshots, indexes, logs, packs, keys), and not at all when the copy had
  errors. ``config`` is never deleted.

Nothing is printed here: progress goes through the ``Progress`` callback, results return.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

import blake3

from safehold.archive.progress import NullProgress, Progress
from safehold.errors import (
    AlreadyExists,
    CorruptObject,
    InvalidArgument,
    NotFound,
    ReplicaMismatch,
    SafeholdError,
    StoreError,
)
from safehold.repo.crypto import content_hash
from safehold.repo.repository import Repository
from safehold.storage.base import ObjectInfo, ObjectStore

__all__ = [
    "COPY_ORDER",
    "DEFAULT_CONNECTIONS",
    "DELETE_ORDER",
    "LOG_GROUPS",
    "CopyError",
    "CopyFailed",
    "Inventory",
    "PrefixStats",
    "ReplicationResult",
    "check_target",
    "copy_object",
    "group_of",
    "listed",
    "log_authenticator",
    "replicate",
    "take_inventory",
]

DEFAULT_CONNECTIONS = 8
OTHER = "other"  # any prefix this version does not know: copied with the logs
LOG_GROUPS = ("wal", "binlog")  # archived database logs: PostgreSQL WAL, MariaDB binlogs
COPY_ORDER = ("keys", "config", "data", *LOG_GROUPS, OTHER, "index", "snapshots")
DELETE_ORDER = ("snapshots", "index", OTHER, *reversed(LOG_GROUPS), "data", "keys")
_KNOWN = {"keys", "data", *LOG_GROUPS, "index", "snapshots"}
_CONTENT_ADDRESSED = {"keys", "data", "index", "snapshots"}
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
_SKIPPED = "locks"


def group_of(key: str) -> str:
    """The prefix an object belongs to, as the copy order names it."""
    if key == "config":
        return "config"
    head = key.split("/", 1)[0]
    return head if head in _KNOWN else OTHER


def _is_content_addressed(key: str) -> bool:
    return group_of(key) in _CONTENT_ADDRESSED and bool(_HEX_ID.match(key.rsplit("/", 1)[-1]))


# ---- what is where ----------------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    """Every object (name → size) of the source and of the target, ``locks/`` left out;
    when the source's store says, when each of its objects was written."""

    source: dict[str, int]
    target: dict[str, int]
    target_exists: bool
    written: dict[str, datetime] = field(default_factory=dict)  # source objects' times

    def missing(self) -> dict[str, int]:
        return {k: n for k, n in self.source.items() if k not in self.target}

    def extra(self) -> dict[str, int]:
        """Objects only on the target: what ``delete=True`` removes."""
        return {k: n for k, n in self.target.items() if k not in self.source}

    def differing(self) -> list[str]:
        """Objects on both whose sizes differ: damage or a different repository."""
        return sorted(k for k, n in self.source.items() if k in self.target and self.target[k] != n)


def _infos(store: ObjectStore, prefix: str) -> dict[str, ObjectInfo]:
    return {
        info.key: info
        for info in store.list(prefix)
        if info.key.split("/", 1)[0] != _SKIPPED and not info.key.startswith(".")
    }


def listed(store: ObjectStore, prefix: str) -> dict[str, int]:
    """Object name → size under ``prefix`` (``locks/`` and temporary files left out)."""
    return {key: info.size for key, info in _infos(store, prefix).items()}


def take_inventory(source: ObjectStore, target: ObjectStore) -> Inventory:
    """List both stores; the source newest-first by kind (see the module docstring).

    Snapshots are taken from a listing made before the index listing, and indexes from one
    made before the full listing that gives the packs, so whatever a snapshot or an index
    needs was written before the listing that should contain it.
    """
    snapshots = _infos(source, "snapshots/")
    indexes = _infos(source, "index/")
    rest = {
        k: info
        for k, info in _infos(source, "").items()
        if group_of(k) not in ("snapshots", "index")
    }
    infos = {**rest, **indexes, **snapshots}
    exists = target.exists()
    return Inventory(
        {k: info.size for k, info in infos.items()},
        listed(target, "") if exists else {},
        exists,
        {k: info.modified for k, info in infos.items() if info.modified is not None},
    )


def check_target(source: ObjectStore, target: ObjectStore, inventory: Inventory) -> None:
    """Refuse a target that holds another repository (or anything that is not this one's)."""
    if "config" in inventory.target:
        try:
            same = target.get("config") == source.get("config")
        except NotFound:
            same = False
        if not same:
            raise ReplicaMismatch(
                target.location, source.location, "its config differs (another repository)"
            )
        return
    strangers = sorted(k for k in inventory.target if k not in inventory.source)
    if strangers:
        shown = ", ".join(strangers[:3])
        raise ReplicaMismatch(
            target.location,
            source.location,
            f"it has no config but holds {len(strangers)} object(s) the source lacks ({shown})",
        )


# ---- copying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyError:
    """One object that was not copied (or not deleted), and why."""

    key: str
    message: str
    corrupt: bool  # the source object is damaged: rerunning will not help

    def to_doc(self) -> dict[str, object]:
        return {"object": self.key, "error": self.message, "corrupt": self.corrupt}


@dataclass
class PrefixStats:
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0  # already on the target
    failed: int = 0
    held_back: int = 0  # not tried: an earlier phase failed
    deleted: int = 0

    def to_doc(self) -> dict[str, int]:
        return {
            "copied": self.copied,
            "copied_bytes": self.copied_bytes,
            "skipped": self.skipped,
            "failed": self.failed,
            "held_back": self.held_back,
            "deleted": self.deleted,
        }


@dataclass
class ReplicationResult:
    source: str
    target: str
    created_target: bool = False
    prefixes: dict[str, PrefixStats] = field(default_factory=dict)
    errors: list[CopyError] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    deletions_skipped: bool = False  # asked for, but the copy had errors
    seconds: float = 0.0

    def stats(self, group: str) -> PrefixStats:
        return self.prefixes.setdefault(group, PrefixStats())

    @property
    def ok(self) -> bool:
        return not self.errors and not self.conflicts

    @property
    def copied(self) -> int:
        return sum(s.copied for s in self.prefixes.values())

    @property
    def copied_bytes(self) -> int:
        return sum(s.copied_bytes for s in self.prefixes.values())

    @property
    def deleted(self) -> int:
        return sum(s.deleted for s in self.prefixes.values())

    @property
    def mb_per_s(self) -> float:
        return self.copied_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


class CopyFailed(Exception):
    """``copy_object`` could not copy one object; ``corrupt``: the source's copy is damaged."""

    def __init__(self, message: str, corrupt: bool) -> None:
        super().__init__(message)
        self.message = message
        self.corrupt = corrupt


def copy_object(
    source: ObjectStore,
    target: ObjectStore,
    key: str,
    size: int,
    authenticate: Callable[[str, bytes], object] | None = None,
    check_size: bool = True,
) -> bool:
    """Copy one object, verified; True when written, False when the target had it already.

    ``authenticate(key, data)`` raises CorruptObject for a damaged sealed object whose name
    is not its hash (``wal/…``: the AES-GCM tag proves it whole). ``check_size=False``
    leaves the size check of a content-addressed copy to the caller (one listing for many).
    """
    try:
        data = source.get(key)
    except NotFound:
        raise CopyFailed("vanished from the source since it was listed", False) from None
    except SafeholdError as exc:
        raise CopyFailed(f"cannot read from the source: {exc}", False) from exc
    addressed = _is_content_addressed(key)
    if addressed:
        actual = content_hash(data)
        if actual != key.rsplit("/", 1)[-1]:
            raise CopyFailed(f"content does not match its name (BLAKE3 {actual[:16]}…)", True)
    elif len(data) != size:
        raise CopyFailed(f"read {len(data)} bytes, listed as {size}", False)
    elif authenticate is not None:
        try:
            authenticate(key, data)
        except CorruptObject as exc:
            raise CopyFailed(exc.args[1] if len(exc.args) > 1 else str(exc), True) from None
    written = True
    try:
        target.put(key, data, if_absent=True)
    except AlreadyExists:  # another run wrote it meanwhile: verify it like our own
        written = False
    except SafeholdError as exc:
        raise CopyFailed(f"cannot write to the replica: {exc}", False) from exc
    if check_size or not addressed:
        _verify_written(target, key, data, addressed)
    return written


def _verify_written(target: ObjectStore, key: str, data: bytes, addressed: bool) -> None:
    try:
        if addressed:
            stored = target.stat(key).size
            if stored != len(data):
                raise CopyFailed(f"replica holds {stored} bytes, {len(data)} were written", False)
        elif blake3.blake3(target.get(key)).digest() != blake3.blake3(data).digest():
            raise CopyFailed("replica's copy differs from what was written", False)
    except NotFound:
        raise CopyFailed("not on the replica after writing it", False) from None
    except StoreError as exc:
        raise CopyFailed(f"cannot verify the replica's copy: {exc}", False) from exc


def _run_all(
    pool: ThreadPoolExecutor,
    keys: Iterable[str],
    work: Callable[[str], object],
    done: Callable[[str, Future[object]], None],
) -> None:
    """Run ``work`` on every key in the pool; call ``done`` in this thread as each ends."""
    futures = {pool.submit(work, key): key for key in keys}
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
        for future in finished:
            done(futures[future], future)


def replicate(
    repo: Repository,
    target: ObjectStore,
    *,
    connections: int = DEFAULT_CONNECTIONS,
    delete: bool = False,
    progress: Progress | None = None,
) -> ReplicationResult:
    """Bring ``target`` up to date with ``repo``'s store; see the module docstring."""
    if connections < 1:
        raise InvalidArgument("--connections must be at least 1")
    progress = progress or NullProgress()
    source = repo.store
    if source.location == target.location:
        raise InvalidArgument(f"the replica {target.location} is the repository itself")
    started = time.monotonic()
    result = ReplicationResult(source.location, target.location)
    inventory = take_inventory(source, target)
    check_target(source, target, inventory)
    if not inventory.target_exists:
        target.create()
        result.created_target = True
    missing = inventory.missing()
    for key in inventory.source.keys() & inventory.target.keys():
        result.stats(group_of(key)).skipped += 1
    result.conflicts = inventory.differing()
    progress.set_total(len(missing), sum(missing.values()))
    pool = ThreadPoolExecutor(connections, thread_name_prefix="replicate")
    try:
        _copy_phases(pool, source, target, inventory, result, progress, log_authenticator(repo))
        if delete and result.ok:
            _delete_phases(pool, target, inventory.extra(), result, progress)
        elif delete:
            result.deletions_skipped = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    result.seconds = time.monotonic() - started
    return result


def log_authenticator(repo: Repository) -> Callable[[str, bytes], object]:
    """Archived logs are sealed with the master key: open them to prove them whole."""

    def authenticate(key: str, data: bytes) -> None:
        if group_of(key) in LOG_GROUPS:
            repo.key.open(data, key)

    return authenticate


def _copy_phases(
    pool: ThreadPoolExecutor,
    source: ObjectStore,
    target: ObjectStore,
    inventory: Inventory,
    result: ReplicationResult,
    progress: Progress,
    authenticate: Callable[[str, bytes], object],
) -> None:
    missing = inventory.missing()
    blocked = False
    for group in COPY_ORDER:
        keys = sorted(k for k in missing if group_of(k) == group)
        if not keys:
            continue
        stats = result.stats(group)
        if blocked:
            stats.held_back += len(keys)
            continue
        by_listing = _size_check_by_listing(group, len(keys), inventory)
        landed: dict[str, bool] = {}  # key → written by us (False: it was there already)

        def done(key: str, future: Future[object], landed: dict[str, bool] = landed) -> None:
            try:
                landed[key] = bool(future.result())
            except CopyFailed as exc:
                landed.pop(key, None)
                result.errors.append(CopyError(key, exc.message, exc.corrupt))
                progress.error(key, exc.message)
                return
            progress.advance(1, missing[key])

        def work(key: str, check_size: bool = not by_listing) -> bool:
            return copy_object(source, target, key, missing[key], authenticate, check_size)

        before = len(result.errors)
        _run_all(pool, keys, work, done)
        if by_listing:
            result.errors += _sizes_listed(target, group, landed, missing, progress)
        failures = result.errors[before:]
        for failure in failures:
            landed.pop(failure.key, None)
        stats.failed += len(failures)
        stats.copied += sum(landed.values())
        stats.copied_bytes += sum(missing[k] for k, written in landed.items() if written)
        stats.skipped += sum(not written for written in landed.values())
        blocked = any(not f.corrupt for f in failures)


LIST_PAGE = 1000  # objects per LIST request (S3's page)


def _size_check_by_listing(group: str, copying: int, inventory: Inventory) -> bool:
    """Whether one listing of the prefix costs fewer requests than a HEAD per copied object."""
    if group not in _CONTENT_ADDRESSED:
        return False
    there = sum(1 for k in inventory.target if group_of(k) == group)
    return (there + copying) // LIST_PAGE + 1 < copying


def _sizes_listed(
    target: ObjectStore,
    group: str,
    landed: dict[str, bool],
    missing: dict[str, int],
    progress: Progress,
) -> list[CopyError]:
    """Check the size of every copied object of a prefix against one listing of it."""
    unlisted = ""
    try:
        found = listed(target, f"{group}/")
    except StoreError as exc:
        found = {}
        unlisted = f"cannot list the replica to verify it: {exc}"
    failures = []
    for key in sorted(landed):
        size = found.get(key)
        if size == missing[key]:
            continue
        if unlisted:
            message = unlisted
        elif size is None:
            message = "not on the replica after writing it"
        else:
            message = f"replica holds {size} bytes, {missing[key]} were written"
        failures.append(CopyError(key, message, False))
        progress.error(key, message)
    return failures


def _delete_phases(
    pool: ThreadPoolExecutor,
    target: ObjectStore,
    extra: dict[str, int],
    result: ReplicationResult,
    progress: Progress,
) -> None:
    def remove(key: str) -> None:
        with contextlib.suppress(NotFound):
            target.delete(key)

    for group in DELETE_ORDER:
        keys = sorted(k for k in extra if group_of(k) == group)
        if not keys:
            continue
        stats = result.stats(group)
        failed = 0

        def done(key: str, future: Future[object], stats: PrefixStats = stats) -> None:
            nonlocal failed
            exc = future.exception()
            if exc is None:
                stats.deleted += 1
                return
            failed += 1
            message = f"cannot delete from the replica: {exc}"
            result.errors.append(CopyError(key, message, False))
            progress.error(key, message)

        _run_all(pool, keys, remove, done)
        if failed:  # keep the safety order: never delete packs an undeleted index names
            return
