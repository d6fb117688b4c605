"""Reading snapshots without restoring them: find, list, diff, dump, sizes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from safehold.archive.extent import TreeEntries, check_extent, measure
from safehold.archive.tree import BadEntry, Node, iter_entries, tree_nodes, whole_nodes
from safehold.errors import InvalidArgument, TooDeep
from safehold.repo.limits import MAX_DEPTH
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

Entries = Callable[[str], Iterable[Node | BadEntry]]  # a tree's entries, by its id

__all__ = [
    "SizeStats",
    "diff_trees",
    "dump_file",
    "entry_doc",
    "find_node",
    "node_time",
    "size_stats",
    "walk",
]


def entry_doc(path: bytes, node: Node) -> dict[str, object]:
    """An entry as ``ls --json`` (and ``find --json``) show it."""
    return {
        "path": os.fsdecode(path),
        "name": node.display_name,
        "type": node.type,
        "mode": node.mode,
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "size": node.size,
        "mtime": node_time(node.mtime_ns),
        **({"link_target": os.fsdecode(node.target)} if node.type == "symlink" else {}),
    }


def node_time(ns: int) -> str:
    """A node's nanosecond timestamp as ISO 8601 UTC."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def _nodes(repo: Repository, tree_id: str | None, entries: Entries | None = None) -> list[Node]:
    if not tree_id:
        return []
    if entries is not None:
        return whole_nodes(entries(tree_id), f"tree {tree_id}")
    return tree_nodes(repo.load_tree_text(tree_id), f"tree {tree_id}")


def _split(path: str) -> list[bytes]:
    if not path.startswith("/"):
        raise InvalidArgument(f"path {path!r} must be absolute, as the snapshot records it")
    return [p for p in os.fsencode(path).split(b"/") if p]


def find_node(repo: Repository, snapshot: Snapshot, path: str) -> Node | None:
    """The node at an absolute path of the snapshot; None for the root itself."""
    parts = _split(path)
    tree_id: str | None = snapshot.tree
    node = None
    for part in parts:
        entries = iter_entries(repo.load_tree_text(tree_id), f"tree {tree_id}") if tree_id else ()
        # as restore does: the first entry of a name, whatever else is wrong in the tree
        node = next((n for n in entries if isinstance(n, Node) and n.name == part), None)
        if node is None:
            raise InvalidArgument(f"{path} is not in snapshot {snapshot.short_id}")
        tree_id = node.subtree if node.type == "dir" else None
    return node


def walk(
    repo: Repository,
    tree_id: str | None,
    prefix: bytes,
    entries: Entries | None = None,
) -> Iterator[tuple[bytes, Node]]:
    """Every entry below a tree, depth first, with its absolute path (``entries`` gives a
    tree's parsed entries: read and parsed from the repository by default).

    Iterative, not recursive: a tree may be deeper than Python's recursion limit. A
    directory deeper than ``MAX_DEPTH`` levels ends the walk with an error (restore
    does not restore it either).
    """
    stack = [(prefix, iter(_nodes(repo, tree_id, entries)))]
    while stack:
        base, nodes = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        path = base + b"/" + node.name
        if node.type == "dir" and len(stack) > MAX_DEPTH:
            raise TooDeep(os.fsdecode(path), MAX_DEPTH)
        yield path, node
        if node.type == "dir":
            stack.append((path, iter(_nodes(repo, node.subtree, entries))))


def walk_path(repo: Repository, snapshot: Snapshot, path: str) -> Iterator[tuple[bytes, Node]]:
    """``walk`` from an absolute path: the entry itself, then what is below it; refused
    (``SnapshotTooLarge``) when shared trees make it expand past what the snapshot holds."""
    node = find_node(repo, snapshot, path) if path.rstrip("/") else None
    start = node.subtree if node is not None else snapshot.tree
    trees = TreeEntries(repo.load_tree_text)
    if start:
        check_extent(snapshot, measure(lambda t: _nodes(repo, t, trees.keep), start), start)
    if node is None:
        yield from walk(repo, snapshot.tree, b"", trees.take)
        return
    base = os.fsencode(path.rstrip("/"))
    yield base, node
    if node.type == "dir":
        yield from walk(repo, node.subtree, base, trees.take)


def diff_trees(
    repo: Repository,
    old: str | None,
    new: str | None,
    prefix: bytes = b"",
    metadata: bool = False,
) -> Iterator[tuple[str, bytes, Node]]:
    """("+", path, node) added, ("-", …) removed, ("M", …) changed (content, target, mode or
    owner), ("T", …) of another type; with ``metadata`` also ("U", …) for an entry whose
    content, mode and owner are the same but whose mtime, owner names or xattrs are not
    (restic's ``diff --metadata``). Equal subtrees are skipped. Iterative, like ``walk``."""
    stack: list[tuple[bytes, Iterator[bytes], dict[bytes, Node], dict[bytes, Node]]] = []

    def compare(old: str | None, new: str | None, prefix: bytes) -> None:
        if old != new:
            before = {n.name: n for n in _nodes(repo, old)}
            after = {n.name: n for n in _nodes(repo, new)}
            stack.append((prefix, iter(sorted(before.keys() | after.keys())), before, after))

    compare(old, new, prefix)
    while stack:
        base, names, before, after = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path = base + b"/" + name
        a, b = before.get(name), after.get(name)
        if a is None and b is not None:
            yield from _with_contents("+", repo, path, b)
        elif b is None and a is not None:
            yield from _with_contents("-", repo, path, a)
        elif a is not None and b is not None:
            if a.type != b.type:
                yield "T", path, b
                if a.type == "dir":  # what was below the old directory is gone ...
                    yield from (("-", p, n) for p, n in walk(repo, a.subtree, path))
                if b.type == "dir":  # ... and what is below the new one is new
                    yield from (("+", p, n) for p, n in walk(repo, b.subtree, path))
            elif a.type == "dir":
                if _attributes(a) != _attributes(b):  # a directory's own mode or owner
                    yield "M", path, b
                elif metadata and _metadata(a) != _metadata(b):
                    yield "U", path, b
                compare(a.subtree, b.subtree, path)
            elif (a.content, a.target, a.rdev, *_attributes(a)) != (
                b.content,
                b.target,
                b.rdev,
                *_attributes(b),
            ):
                yield "M", path, b
            elif metadata and _metadata(a) != _metadata(b):
                yield "U", path, b


def _with_contents(
    kind: str, repo: Repository, path: bytes, node: Node
) -> Iterator[tuple[str, bytes, Node]]:
    yield kind, path, node
    if node.type == "dir":
        yield from ((kind, p, n) for p, n in walk(repo, node.subtree, path))


def _attributes(node: Node) -> tuple[int, int, int]:
    return node.mode, node.uid, node.gid


def _metadata(node: Node) -> tuple[object, ...]:
    return node.mtime_ns, node.user, node.group, node.xattrs


def dump_file(repo: Repository, node: Node, out: BinaryIO) -> int:
    if node.type != "file":
        raise InvalidArgument(f"{node.display_name} is a {node.type}, not a file")
    written = 0
    for blob_id in node.content:
        data = repo.load_blob(blob_id)
        out.write(data)
        written += len(data)
    return written


@dataclass
class SizeStats:
    snapshots: int = 0
    files: int = 0
    logical_size: int = 0
    unique_raw_size: int = 0
    stored_size: int = 0
    blobs: int = 0

    @property
    def dedup_ratio(self) -> float:
        return self.logical_size / self.unique_raw_size if self.unique_raw_size else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_raw_size / self.stored_size if self.stored_size else 1.0


def size_stats(repo: Repository, snapshots: list[Snapshot]) -> SizeStats:
    """Logical size (what a restore writes), and what the distinct blobs take raw and stored."""
    stats = SizeStats(snapshots=len(snapshots))
    seen_blobs: set[bytes] = set()

    def account(blob_id: bytes) -> None:
        if blob_id not in seen_blobs:
            seen_blobs.add(blob_id)
            loc = repo.locate(blob_id)
            stats.unique_raw_size += loc.raw_length
            stats.stored_size += loc.length
            stats.blobs += 1

    totals: dict[str, tuple[int, int]] = {}  # tree id -> (files, logical size) below it
    loaded: dict[str, list[Node]] = {}  # trees read, waiting for their subtrees' totals

    def visit(root: str) -> tuple[int, int]:
        """Totals below a tree; each tree is read once however often snapshots repeat it.

        Post-order with an explicit stack: a tree may be deeper than Python's recursion.
        """
        stack = [root]
        while stack:
            tree_id = stack[-1]
            if tree_id in totals:
                stack.pop()
                continue
            if tree_id not in loaded:
                loaded[tree_id] = _nodes(repo, tree_id)
            nodes = loaded[tree_id]
            pending = [
                n.subtree
                for n in nodes
                if n.type == "dir" and n.subtree and n.subtree not in totals
            ]
            if pending:
                stack.extend(pending)
                continue
            account(bytes.fromhex(tree_id))
            files = size = 0
            for node in nodes:
                if node.type == "file":
                    files += 1
                    size += node.size
                    for blob_id in node.content:
                        account(blob_id)
                elif node.type == "dir" and node.subtree:
                    files += totals[node.subtree][0]
                    size += totals[node.subtree][1]
            totals[tree_id] = files, size
            del loaded[tree_id]
            stack.pop()
        return totals[root]

    for snapshot in snapshots:
        files, size = visit(snapshot.tree)
        stats.files += files
        stats.logical_size += size
    return stats
