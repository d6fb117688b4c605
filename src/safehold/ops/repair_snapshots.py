"""``repair snapshots``: rewrite snapshots that reference lost data, keeping what remains.

restic's ``repair snapshots``, on our format. Each chosen snapshot's trees are walked once
(a tree shared by several snapshots is repaired once, bottom-up, without recursion):

- a file whose content names a lost data blob keeps its surviving blobs, in order, and
  its size becomes their sum (restic: "removed missing content"), so what remains of it
  still restores, and the next backup, seeing another size, reads it again;
- a subtree that cannot be loaded becomes an empty directory with the same metadata;
- an entry of a tree that cannot be used (malformed, a repeated name) is dropped;
- a snapshot whose root tree cannot be loaded is unrepairable: reported, and deleted only
  with ``forget`` (restic deletes it in any case); an unreadable snapshot document is
  deleted only when named and ``forget`` is given (as restic).

A data blob is lost when the index does not know it, or when its pack is missing from
the store or shorter than the index says; with ``read_data`` also when it does not
decrypt and authenticate. Only damage counts: a transient store error aborts the run
instead of emptying a directory. Unchanged trees keep their ids; changed ones are written
through ``Repository.writer`` (a known tree is not stored twice), and only after their
packs and index are stored is the new snapshot document written: the old one's fields,
the tag ``repaired`` added, and ``original`` naming the original. With
``forget`` the original is deleted after that. An original that already has a repaired
twin with the same tree (a run interrupted before ``forget``, or run twice) is not
repaired again. ``dry_run`` writes nothing and reports the same.

Repair depends on a sound index (restic's rule): run ``repair index`` first after losing
packs. A rewritten tree whose id the index knows but whose pack is lost cannot be
stored again, and the run stops with ``IndexNeedsRepair`` before writing any snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from safehold.archive.tree import BadEntry, Node, decode_entries, encode_docs, encode_tree
from safehold.errors import CorruptObject, IndexNeedsRepair, NotFound
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot
from safehold.repo.writer import BlobSaver

__all__ = [
    "REPAIRED_TAG",
    "Change",
    "RepairSnapshotsResult",
    "SnapshotRepair",
    "TreeSink",
    "derived_twins",
    "forget_snapshot",
    "repair_snapshots",
    "save_derived",
    "select_snapshots",
]

REPAIRED_TAG = "repaired"
VERIFY_BATCH_BYTES = 32 << 20  # read_data: at most this much plaintext in memory at once

ChangeKind = Literal["file", "dir", "entry"]
Status = Literal["unchanged", "repaired", "already_repaired", "unrepairable", "unreadable"]


@dataclass(frozen=True)
class Change:
    """One thing a repair takes away: a file's lost blobs, a directory's contents, an entry."""

    path: str  # absolute, as in the snapshot
    kind: ChangeKind
    detail: str

    def to_doc(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail}


@dataclass
class SnapshotRepair:
    """What happened to one snapshot (``snapshot_id`` is the original's)."""

    snapshot_id: str
    status: Status
    snapshot: Snapshot | None = None  # None when its document cannot be read
    changes: list[Change] = field(default_factory=list)
    new_id: str | None = None  # the repaired snapshot (None in a dry run)
    new_tree: str | None = None
    forgotten: bool = False  # the original was deleted
    reason: str = ""  # why it is unrepairable or unreadable

    def to_doc(self) -> dict[str, object]:
        s = self.snapshot
        return {
            "id": self.snapshot_id,
            "short_id": self.snapshot_id[:8],
            "time": s.time if s else None,
            "hostname": s.hostname if s else None,
            "paths": s.paths if s else [],
            "status": self.status,
            "new_id": self.new_id,
            "new_tree": self.new_tree,
            "forgotten": self.forgotten,
            "reason": self.reason,
            "changes": [c.to_doc() for c in self.changes],
        }


@dataclass
class RepairSnapshotsResult:
    snapshots: list[SnapshotRepair] = field(default_factory=list)
    trees_written: int = 0  # in a dry run: trees that would be written
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Nothing was beyond repair (a forgotten unrepairable snapshot still counts)."""
        return not any(r.status in ("unrepairable", "unreadable") for r in self.snapshots)


def select_snapshots(
    repo: Repository, refs: list[str], keep: Callable[[Snapshot], bool] = lambda _: True
) -> tuple[list[Snapshot], list[str]]:
    """The snapshots to repair and the ids of unreadable snapshot documents among them.

    No ``refs``: every readable snapshot ``keep`` accepts, and every unreadable document.
    Otherwise each ref (``latest``, an id or a unique prefix) must name a readable snapshot
    ``keep`` accepts or, failing that, one unreadable document (so that it can be forgotten).
    """
    everything = repo.list_snapshots()
    readable = [s for s in everything if keep(s)]
    known = {info.key.removeprefix("snapshots/") for info in repo.store.list("snapshots/")}
    unreadable = sorted(known - {s.id for s in everything})
    if not refs:
        return readable, unreadable
    chosen: dict[str, Snapshot] = {}
    broken: list[str] = []
    for ref in refs:
        matches = [u for u in unreadable if ref and u.startswith(ref.lower())]
        if (
            ref != "latest"
            and len(matches) == 1
            and not any(s.id.startswith(ref.lower()) for s in readable)
        ):
            broken.append(matches[0])
            continue
        found = find_snapshot(readable, ref)
        chosen[found.id] = found
    return sorted(chosen.values(), key=lambda s: (s.datetime, s.id)), sorted(set(broken))


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A tree after repair: its new id (None: it cannot be loaded) and what it lost."""

    tree_id: str | None
    changes: tuple[tuple[bytes, ChangeKind, str], ...] = ()  # (path below the tree, …)
    reason: str = ""


_UNCHANGED = _Outcome("")  # one shared value for the many trees that need nothing


class TreeSink:
    """Stores rewritten trees, or in a dry run only computes their ids (shared with
    ``rewrite``, ops/rewrite.py)."""

    def __init__(self, repo: Repository, packs: dict[str, int], saver: BlobSaver | None) -> None:
        self.repo = repo
        self.packs = packs
        self.saver = saver
        self.written = 0
        self._would_write: set[bytes] = set()  # dry run: what a writer would store
        self._empty: str | None = None

    def save(self, data: bytes) -> str:
        blob_id = self.repo.key.blob_id(data)
        loc = self.repo.index.get(blob_id)
        if loc is not None and not _stored(loc.pack, loc.offset + loc.length, self.packs):
            raise IndexNeedsRepair(blob_id.hex())
        if self.saver is None:
            if loc is None and blob_id not in self._would_write:
                self._would_write.add(blob_id)
                self.written += 1
            return blob_id.hex()
        saved, new = self.saver.save(BlobType.TREE, data)
        self.written += new
        return saved.hex()

    def empty_tree(self) -> str:
        if self._empty is None:
            self._empty = self.save(encode_docs([]))
        return self._empty


class _Repairer:
    def __init__(self, repo: Repository, read_data: bool) -> None:
        self.repo = repo
        self.read_data = read_data
        self.packs = {info.key.rsplit("/", 1)[-1]: info.size for info in repo.store.list("data/")}
        self.verified: dict[bytes, bool] = {}  # read_data: blob id -> authenticated
        self.done: dict[str, _Outcome] = {}
        self.sink = TreeSink(repo, self.packs, None)

    # ---- data blobs -----------------------------------------------------------------

    def lost(self, blob_id: bytes) -> bool:
        loc = self.repo.index.get(blob_id)
        if loc is None or not _stored(loc.pack, loc.offset + loc.length, self.packs):
            return True
        return self.read_data and not self.verified.get(blob_id, True)

    def verify(self, nodes: list[Node]) -> None:
        """read_data: authenticate the data blobs of these files not read before."""
        todo = [
            c
            for n in nodes
            if n.type == "file"
            for c in n.content
            if c not in self.verified and not self.lost(c)
        ]
        batch: list[bytes] = []
        size = 0
        for blob_id in dict.fromkeys(todo):
            loc = self.repo.index.get(blob_id)
            assert loc is not None  # not lost
            batch.append(blob_id)
            size += loc.raw_length
            if size >= VERIFY_BATCH_BYTES:
                self._verify_batch(batch)
                batch, size = [], 0
        if batch:
            self._verify_batch(batch)

    def _verify_batch(self, batch: list[bytes]) -> None:
        for blob_id, data in self.repo.load_blobs(batch).items():
            self.verified[blob_id] = isinstance(data, bytes)

    # ---- trees ----------------------------------------------------------------------

    def repair_tree(self, root: str) -> _Outcome:
        """The tree ``root`` repaired, children before parents, with an explicit stack."""
        loaded: dict[str, tuple[list[Node], list[BadEntry]]] = {}
        stack = [root]
        while stack:
            tree_id = stack[-1]
            if tree_id in self.done:
                stack.pop()
                continue
            if tree_id not in loaded:
                try:
                    loaded[tree_id] = self.load(tree_id)
                except (CorruptObject, NotFound, ValueError) as exc:
                    self.done[tree_id] = _Outcome(None, reason=str(exc))
                    stack.pop()
                    continue
            nodes, bad = loaded[tree_id]
            pending = [
                n.subtree
                for n in nodes
                if n.type == "dir" and n.subtree and n.subtree not in self.done
            ]
            if pending:
                stack.extend(dict.fromkeys(p for p in pending if p not in loaded))
                if all(p in loaded for p in pending):  # only a cycle (impossible by hash) remains
                    raise CorruptObject(f"tree {tree_id}", "trees form a cycle")
                continue
            self.done[tree_id] = self.rebuild(nodes, bad)
            del loaded[tree_id]
            stack.pop()
        outcome = self.done[root]
        return _Outcome(root) if outcome is _UNCHANGED else outcome

    def load(self, tree_id: str) -> tuple[list[Node], list[BadEntry]]:
        nodes, bad = decode_entries(self.repo.load_tree_document(tree_id), f"tree {tree_id}")
        if self.read_data:
            self.verify(nodes)
        return nodes, bad

    def rebuild(self, nodes: list[Node], bad: list[BadEntry]) -> _Outcome:
        changes: list[tuple[bytes, ChangeKind, str]] = [
            (b"/" + e.name, "entry", f"entry removed: {e.reason}") for e in bad
        ]
        kept: list[Node] = []
        for node in nodes:
            if node.type == "file" and any(self.lost(c) for c in node.content):
                node, detail = self.salvage(node)
                changes.append((b"/" + node.name, "file", detail))
            elif node.type == "dir" and node.subtree:
                sub = self.done[node.subtree]
                if sub is _UNCHANGED:
                    pass
                elif sub.tree_id is None:
                    node = replace(node, subtree=self.sink.empty_tree())
                    detail = f"cannot be loaded ({sub.reason}); now an empty directory"
                    changes.append((b"/" + node.name, "dir", detail))
                else:
                    node = replace(node, subtree=sub.tree_id)
                    changes.extend((b"/" + node.name + p, k, d) for p, k, d in sub.changes)
            kept.append(node)
        if not changes:
            return _UNCHANGED
        return _Outcome(self.sink.save(encode_tree(kept)), tuple(changes))

    def salvage(self, node: Node) -> tuple[Node, str]:
        """The file without its lost blobs; its size the sum of what remains."""
        content = [c for c in node.content if not self.lost(c)]
        size = 0
        for blob_id in content:
            loc = self.repo.index.get(blob_id)
            assert loc is not None
            size += loc.raw_length
        detail = (
            f"{len(node.content) - len(content)} of {len(node.content)} blobs lost;"
            f" {size} of {node.size} bytes kept"
        )
        return replace(node, content=content, size=size), detail


def repair_snapshots(
    repo: Repository,
    snapshots: list[Snapshot],
    unreadable: Sequence[str] = (),
    *,
    dry_run: bool = False,
    forget: bool = False,
    read_data: bool = False,
    forget_unreadable: bool = False,
    before_write: Callable[[], None] = lambda: None,
) -> RepairSnapshotsResult:
    """Repair ``snapshots`` (the index must be loaded); see the module's docstring.

    ``unreadable`` are ids of snapshot documents that cannot be loaded: reported, and
    deleted only with ``forget_unreadable`` (restic: when named on the command line and
    ``--forget`` is given). ``before_write`` runs before each irreversible step (the new
    trees' index, each snapshot saved or deleted): the place to check the lock still holds.
    """
    result = RepairSnapshotsResult(dry_run=dry_run)
    repairer = _Repairer(repo, read_data)
    outcomes: list[tuple[Snapshot, _Outcome]] = []
    if dry_run:
        outcomes = [(s, repairer.repair_tree(s.tree)) for s in snapshots]
    else:
        with repo.writer(before_index=before_write) as writer:
            repairer.sink.saver = writer
            outcomes = [(s, repairer.repair_tree(s.tree)) for s in snapshots]
    result.trees_written = repairer.sink.written
    twins = derived_twins(repo)
    for snapshot, outcome in outcomes:
        entry = _describe(snapshot, outcome)
        result.snapshots.append(entry)
        if entry.status == "repaired":
            new = _repaired(snapshot, entry.new_tree or "")
            entry.new_id, twin = save_derived(repo, new, twins, dry_run, before_write)
            if twin:
                entry.status = "already_repaired"
        if forget and entry.status != "unchanged":
            entry.forgotten = forget_snapshot(repo, snapshot.id, dry_run, before_write)
    for snapshot_id in unreadable:
        reason = "snapshot document cannot be loaded"
        if not forget_unreadable:
            reason += "; name it with --forget to delete it"
        entry = SnapshotRepair(snapshot_id, "unreadable", reason=reason)
        if forget_unreadable:
            entry.forgotten = forget_snapshot(repo, snapshot_id, dry_run, before_write)
        result.snapshots.append(entry)
    return result


def _describe(snapshot: Snapshot, outcome: _Outcome) -> SnapshotRepair:
    if outcome.tree_id is None:
        reason = f"root tree cannot be loaded: {outcome.reason}"
        return SnapshotRepair(snapshot.id, "unrepairable", snapshot, reason=reason)
    if outcome.tree_id == snapshot.tree:
        return SnapshotRepair(snapshot.id, "unchanged", snapshot)
    changes = [Change(os.fsdecode(p), k, d) for p, k, d in outcome.changes]
    return SnapshotRepair(snapshot.id, "repaired", snapshot, changes, new_tree=outcome.tree_id)


def _repaired(original: Snapshot, tree: str) -> Snapshot:
    tags = original.tags if REPAIRED_TAG in original.tags else [*original.tags, REPAIRED_TAG]
    return replace(original, tree=tree, tags=tags, original=original.id, id="")


def derived_twins(repo: Repository) -> dict[tuple[str, str], str]:
    """(original id, tree) -> id of a snapshot already derived from it with that tree."""
    twins: dict[tuple[str, str], str] = {}
    for s in repo.list_snapshots():
        if s.original is not None:
            twins.setdefault((s.original, s.tree), s.id)
    return twins


def save_derived(
    repo: Repository,
    new: Snapshot,
    twins: dict[tuple[str, str], str],
    dry_run: bool,
    before_write: Callable[[], None],
) -> tuple[str | None, bool]:
    """Save a snapshot derived from another (``original`` set; its trees stored and
    indexed already), unless a twin exists: (its id, whether it was a twin). In a dry run
    nothing is saved and a new snapshot has no id."""
    assert new.original is not None
    twin = twins.get((new.original, new.tree))
    if twin is not None:
        return twin, True
    if dry_run:
        return None, False
    before_write()
    return repo.save_snapshot(new), False


def forget_snapshot(
    repo: Repository, snapshot_id: str, dry_run: bool, before: Callable[[], None]
) -> bool:
    """Delete an original once what replaces it is saved; True (as a dry run would)."""
    if not dry_run:
        before()
        repo.delete_snapshot(snapshot_id)
    return True


def _stored(pack: str, needed: int, packs: dict[str, int]) -> bool:
    size = packs.get(pack)
    return size is not None and size >= needed
