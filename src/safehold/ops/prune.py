"""``prune``: delete the data that no snapshot needs, repack packs that are mostly unused.

Safety rests on two rules (docs/ARCHITECTURE.md, "Prune"):
- the caller holds the repository's exclusive lock, so no backup runs meanwhile and packs
  that no index names are leftovers of killed runs, safe to delete;
- nothing is deleted before what replaces it is stored: new packs, then the index
  documents that name them and every kept pack, then the old index documents are removed,
  and only then the packs. A prune killed at any moment leaves a repository in which every
  snapshot restores; the packs it did not get to delete are unreferenced, and the next
  prune deletes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from safehold.archive.tree import decode_entries
from safehold.errors import CorruptObject, InvalidArgument, NotFound, SafeholdError
from safehold.repo.index import BlobLocation, Index
from safehold.repo.pack import PackEntry
from safehold.repo.repository import Repository, pack_key

__all__ = [
    "PrunePlan",
    "PruneResult",
    "parse_max_unused",
    "plan_prune",
    "prune",
    "still_retained",
]

INDEX_DOCUMENT_BLOBS = 50_000  # blobs per new index document: bounded documents
DELETE_WORKERS = 8
LOCK_CHECK_EVERY = 100  # deletions between two checks that the exclusive lock still holds


@dataclass
class PrunePlan:
    """What a prune will do; computed without writing anything (``--dry-run`` prints it)."""

    index_ids: list[str]  # the index documents the new ones replace
    keep: dict[str, list[tuple[bytes, BlobLocation]]]  # packs kept as they are
    repack: dict[str, list[tuple[bytes, BlobLocation]]]  # packs whose used blobs move
    delete: list[str]  # packs nothing needs: unused, or named by no index
    snapshots: int = 0
    used_blobs: int = 0
    used_bytes: int = 0
    unused_bytes: int = 0  # in packs kept or repacked
    delete_bytes: int = 0
    repack_bytes: int = 0  # the used bytes that move
    unindexed_packs: int = 0
    lost_packs: list[str] = field(default_factory=list)  # indexed, absent, not needed
    pack_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def freed_bytes(self) -> int:
        """Store space the deletions give back (repacked packs less what moved out)."""
        gone = [*self.delete, *self.repack]
        return sum(self.pack_sizes.get(p, 0) for p in gone) - self.repack_bytes

    @property
    def nothing_to_do(self) -> bool:
        return not (self.repack or self.delete or self.lost_packs)


@dataclass
class PruneResult:
    plan: PrunePlan
    new_packs: int = 0
    new_index: list[str] = field(default_factory=list)
    deleted_packs: int = 0
    undeletable: list[tuple[str, str]] = field(default_factory=list)  # (object, why)


def parse_max_unused(text: str) -> float:
    """``"10%"`` or ``"0.1"`` → 0.1; the unused share above which a pack is repacked."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise InvalidArgument(f"invalid --max-unused {text!r}: give a share like 10% or 0.1")
    return value


def used_blobs(repo: Repository) -> tuple[set[bytes], int]:
    """Every blob a snapshot needs, each tree walked once; refuses to go on past damage."""
    snapshots = repo.list_snapshots()
    if repo.damaged_snapshots:
        raise SafeholdError(
            f"cannot prune: {repo.damaged_snapshots[0]}; "
            "remove or repair the damaged snapshot first (`safehold check` lists them)"
        )
    used: set[bytes] = set()
    stack = [s.tree for s in snapshots]
    while stack:
        tree_id = stack.pop()
        blob = bytes.fromhex(tree_id)
        if blob in used:
            continue
        used.add(blob)
        try:
            nodes, bad = decode_entries(repo.load_tree_document(tree_id), f"tree {tree_id}")
        except (CorruptObject, ValueError) as exc:
            raise SafeholdError(
                f"cannot prune: tree {tree_id} is unreadable ({exc}); run `safehold check`"
            ) from None
        if bad:
            raise SafeholdError(f"cannot prune: tree {tree_id} has damaged entries")
        for node in nodes:
            if node.type == "dir" and node.subtree:
                stack.append(node.subtree)
            elif node.type == "file":
                used.update(node.content)
    return used, len(snapshots)


def plan_prune(repo: Repository, max_unused: float = 0.10) -> PrunePlan:
    """Decide, pack by pack, what to keep, repack and delete (reads, writes nothing)."""
    index_ids = sorted(info.key.removeprefix("index/") for info in repo.store.list("index/"))
    repo.index = Index()
    for index_id in index_ids:
        repo.index.add_document(repo.load_index_document(index_id), f"index/{index_id}")
    used, snapshot_count = used_blobs(repo)
    by_pack: dict[str, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
    for blob_id, loc in repo.index.items():
        by_pack[loc.pack].append((blob_id, loc))
    missing = [b for b in used if b not in repo.index]
    if missing:
        raise SafeholdError(
            f"cannot prune: {len(missing)} needed blobs are in no index (e.g. "
            f"{missing[0].hex()}); run `safehold repair index`, then `safehold check`"
        )
    on_store = {info.key.rsplit("/", 1)[-1]: info.size for info in repo.store.list("data/")}
    plan = PrunePlan(index_ids, {}, {}, [], snapshots=snapshot_count, pack_sizes=on_store)
    for pack, blobs in by_pack.items():
        needed = [(b, loc) for b, loc in blobs if b in used]
        if pack not in on_store:
            if needed:
                raise SafeholdError(
                    f"cannot prune: {pack_key(pack)} is missing and {len(needed)} needed blobs "
                    "were in it; run `safehold check` and `safehold repair snapshots`"
                )
            plan.lost_packs.append(pack)
            continue
        used_bytes = sum(loc.length for _, loc in needed)
        unused_bytes = sum(loc.length for _, loc in blobs) - used_bytes
        plan.used_blobs += len(needed)
        plan.used_bytes += used_bytes
        if not needed:
            plan.delete.append(pack)
            plan.delete_bytes += on_store[pack]
        elif unused_bytes > max_unused * (used_bytes + unused_bytes):
            plan.repack[pack] = needed
            plan.repack_bytes += used_bytes
            plan.unused_bytes += unused_bytes
        else:
            plan.keep[pack] = blobs
            plan.unused_bytes += unused_bytes
    for pack in sorted(on_store.keys() - by_pack.keys()):
        plan.delete.append(pack)
        plan.delete_bytes += on_store[pack]
        plan.unindexed_packs += 1
    return plan


def prune(
    repo: Repository,
    plan: PrunePlan,
    ensure_locked: Callable[[], None],
    extra_deletions: Iterable[str] = (),
) -> PruneResult:
    """Carry out ``plan`` in the safe order; ``extra_deletions`` are more object keys that
    nothing needs any more (e.g. a database source's archived logs), deleted last."""
    result = PruneResult(plan)
    with repo.writer(before_index=ensure_locked) as writer:
        for pack in sorted(plan.repack):
            _repack(repo, writer.save_sealed, pack, plan.repack[pack])
    result.new_packs = writer.stats.packs
    ensure_locked()
    result.new_index = _write_index(repo, plan.keep)
    ensure_locked()
    _delete_all(repo, [f"index/{i}" for i in plan.index_ids], ensure_locked, result)
    if result.undeletable:  # an old index still names these packs: they must stay
        return result
    packs = [pack_key(p) for p in [*sorted(plan.repack), *plan.delete]]
    deleted = _delete_all(repo, packs, ensure_locked, result)
    result.deleted_packs = len(deleted)
    _delete_all(repo, list(extra_deletions), ensure_locked, result)
    return result


def still_retained(repo: Repository, plan: PrunePlan) -> tuple[int, datetime | None]:
    """How many packs to delete an Object Lock keeps, and until when (0, None: no lock).

    On a bucket with Object Lock a delete only hides an object behind a delete marker; the
    locked version stays, and is billed, until its retention ends. Prune deletes anyway
    (the repository must stop naming the data) and says what stays behind.
    """
    retained_until = getattr(repo.store, "retained_until", None)
    object_lock = getattr(repo.store, "object_lock", None)
    if retained_until is None or object_lock is None or object_lock() is None:
        return 0, None

    def until(key: str) -> datetime | None:
        try:
            found = retained_until(key)
        except NotFound:
            return None
        return found if isinstance(found, datetime) else None

    keys = [pack_key(p) for p in [*sorted(plan.repack), *plan.delete]]
    with ThreadPoolExecutor(DELETE_WORKERS, thread_name_prefix="retention") as pool:
        dates = [d for d in pool.map(until, keys) if d is not None]
    return len(dates), max(dates, default=None)


def _repack(
    repo: Repository,
    save_sealed: Callable[..., None],
    pack: str,
    blobs: list[tuple[bytes, BlobLocation]],
) -> None:
    """Move a pack's used blobs as they are sealed, each authenticated before it moves."""
    blobs = sorted(blobs, key=lambda b: b[1].offset)
    first, last = blobs[0][1], blobs[-1][1]
    name = pack_key(pack)
    data = repo.store.get(name, (first.offset, last.offset + last.length - first.offset))
    for blob_id, loc in blobs:
        sealed = data[loc.offset - first.offset : loc.offset - first.offset + loc.length]
        repo.decode_blob(blob_id, loc, sealed)  # never carry damage into a new pack
        save_sealed(loc.type, blob_id, sealed, loc.raw_length)


def _write_index(repo: Repository, keep: dict[str, list[tuple[bytes, BlobLocation]]]) -> list[str]:
    written: list[str] = []
    batch: dict[str, list[PackEntry]] = {}
    count = 0
    for pack in sorted(keep):
        batch[pack] = [
            PackEntry(loc.type, blob_id, loc.offset, loc.length, loc.raw_length)
            for blob_id, loc in keep[pack]
        ]
        count += len(batch[pack])
        if count >= INDEX_DOCUMENT_BLOBS:
            written.append(_save(repo, batch))
            batch, count = {}, 0
    if batch:
        written.append(_save(repo, batch))
    return written


def _save(repo: Repository, batch: dict[str, list[PackEntry]]) -> str:
    index_id = repo.save_index(batch)
    assert index_id is not None
    return index_id


def _delete_all(
    repo: Repository, keys: list[str], ensure_locked: Callable[[], None], result: PruneResult
) -> list[str]:
    """Delete in parallel, checking the lock between batches; failures are collected."""
    deleted: list[str] = []

    def delete(key: str) -> str | None:
        try:
            repo.store.delete(key)
        except NotFound:
            return None
        except (SafeholdError, OSError) as exc:
            result.undeletable.append((key, str(exc)))
            return None
        return key

    with ThreadPoolExecutor(DELETE_WORKERS, thread_name_prefix="delete") as pool:
        for start in range(0, len(keys), LOCK_CHECK_EVERY):
            ensure_locked()
            batch = keys[start : start + LOCK_CHECK_EVERY]
            deleted.extend(k for k in pool.map(delete, batch) if k is not None)
    return deleted
