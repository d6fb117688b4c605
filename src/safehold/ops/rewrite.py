"""``rewrite --exclude``: cut entries out of existing snapshots (restic's ``rewrite``), e.g.
a secret that should never have been backed up.

Each chosen snapshot's trees are walked once per place they appear (tree and path, since
path patterns depend on where a tree sits), children before parents, without recursion.
An entry matching the patterns (archive/excludes.py) is dropped, with everything below it;
unchanged trees keep their ids. The machinery is ``repair snapshots``' (ops/
repair_snapshots.py): new trees go through ``Repository.writer`` and are stored and
indexed before any new snapshot document names them; a new snapshot keeps the old one's
fields, gains the tag ``rewrite`` and names its ``original`` (the old one's ``original``
when it had one, as restic); ``forget`` deletes the old snapshot only after that; a
snapshot already rewritten to the same tree is not written twice. The data blobs of the
files cut out stay in the repository until ``forget`` + ``prune`` remove every snapshot
that names them: to purge a leaked secret, rewrite every snapshot holding it with
``--forget``, then ``prune``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from safehold.archive.excludes import Excluder
from safehold.archive.tree import Node, decode_tree, encode_tree
from safehold.ops.repair_snapshots import TreeSink, derived_twins, forget_snapshot, save_derived
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["REWRITE_TAG", "RewriteResult", "SnapshotRewrite", "rewrite_snapshots"]

REWRITE_TAG = "rewrite"

Status = Literal["unchanged", "rewritten", "already_rewritten"]


@dataclass
class SnapshotRewrite:
    snapshot: Snapshot
    status: Status
    removed: list[str] = field(default_factory=list)  # entries cut out (not what was below)
    new_id: str | None = None  # None unchanged, or new in a dry run
    new_tree: str | None = None
    forgotten: bool = False

    def to_doc(self) -> dict[str, object]:
        return {
            "id": self.snapshot.id,
            "short_id": self.snapshot.short_id,
            "time": self.snapshot.time,
            "status": self.status,
            "removed": self.removed,
            "new_id": self.new_id,
            "new_tree": self.new_tree,
            "forgotten": self.forgotten,
        }


@dataclass
class RewriteResult:
    snapshots: list[SnapshotRewrite] = field(default_factory=list)
    trees_written: int = 0  # in a dry run: that would be written
    dry_run: bool = False


_Outcome = tuple[str, tuple[bytes, ...]]  # (tree id after, paths removed below it)


class _Rewriter:
    def __init__(self, repo: Repository, excluder: Excluder, sink: TreeSink) -> None:
        self.repo = repo
        self.excluder = excluder
        self.sink = sink
        self.done: dict[tuple[str, bytes], _Outcome] = {}

    def rewrite(self, root: str) -> _Outcome:
        loaded: dict[tuple[str, bytes], list[Node]] = {}
        stack = [(root, b"")]
        while stack:
            key = stack[-1]
            if key in self.done:
                stack.pop()
                continue
            tree_id, base = key
            if key not in loaded:
                loaded[key] = decode_tree(self.repo.load_tree_document(tree_id), f"tree {tree_id}")
            pending = [
                (n.subtree, base + b"/" + n.name)
                for n in loaded[key]
                if n.type == "dir" and n.subtree and not self._cut(base + b"/" + n.name, n)
            ]
            waiting = [p for p in pending if p not in self.done]
            if waiting:
                stack.extend(waiting)
                continue
            self.done[key] = self._rebuild(tree_id, base, loaded.pop(key))
            stack.pop()
        return self.done[(root, b"")]

    def _cut(self, path: bytes, node: Node) -> bool:
        return self.excluder.excludes(path, node.name)

    def _rebuild(self, tree_id: str, base: bytes, nodes: list[Node]) -> _Outcome:
        kept: list[Node] = []
        removed: list[bytes] = []
        for node in nodes:
            path = base + b"/" + node.name
            if self._cut(path, node):
                removed.append(path)
                continue
            if node.type == "dir" and node.subtree:
                new_tree, below = self.done[(node.subtree, path)]
                removed.extend(below)
                node = replace(node, subtree=new_tree)
            kept.append(node)
        if not removed:
            return tree_id, ()
        return self.sink.save(encode_tree(kept)), tuple(removed)


def rewrite_snapshots(
    repo: Repository,
    snapshots: list[Snapshot],
    excluder: Excluder,
    *,
    dry_run: bool = False,
    forget: bool = False,
    before_write: Callable[[], None] = lambda: None,
) -> RewriteResult:
    """Cut what ``excluder`` matches out of ``snapshots`` (the index must be loaded)."""
    result = RewriteResult(dry_run=dry_run)
    packs = {info.key.rsplit("/", 1)[-1]: info.size for info in repo.store.list("data/")}
    sink = TreeSink(repo, packs, None)
    rewriter = _Rewriter(repo, excluder, sink)
    if dry_run:
        outcomes = [(s, rewriter.rewrite(s.tree)) for s in snapshots]
    else:
        with repo.writer(before_index=before_write) as writer:
            sink.saver = writer
            outcomes = [(s, rewriter.rewrite(s.tree)) for s in snapshots]
    result.trees_written = sink.written
    twins = derived_twins(repo)
    for snapshot, (tree, removed) in outcomes:
        entry = SnapshotRewrite(snapshot, "unchanged", [os.fsdecode(p) for p in removed])
        result.snapshots.append(entry)
        if tree == snapshot.tree:
            continue
        tags = snapshot.tags if REWRITE_TAG in snapshot.tags else [*snapshot.tags, REWRITE_TAG]
        new = replace(
            snapshot, tree=tree, tags=sorted(tags), original=snapshot.original or snapshot.id, id=""
        )
        entry.new_tree = tree
        entry.new_id, twin = save_derived(repo, new, twins, dry_run, before_write)
        entry.status = "already_rewritten" if twin else "rewritten"
        if forget:
            entry.forgotten = forget_snapshot(repo, snapshot.id, dry_run, before_write)
    return result
