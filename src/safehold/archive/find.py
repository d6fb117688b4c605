"""``find``: the entries of snapshots whose name or path matches a pattern.

Patterns are the backup's exclude patterns (archive/excludes.py): without "/" a glob on
the name, anywhere; with "/" a glob on the path. Snapshots of one machine share most of
their trees, so each directory is searched once per place it appears (tree id and path),
however many snapshots hold it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from safehold.archive.excludes import Excluder
from safehold.archive.extent import Extent, check_extent, measure
from safehold.archive.tree import Node, decode_tree, iter_entries
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["Finder"]

Match = tuple[bytes, Node]


@dataclass
class Finder:
    """Searches snapshots for ``matcher``'s patterns, remembering searched directories."""

    repo: Repository
    matcher: Excluder
    _done: dict[tuple[str, bytes], list[Match]] = field(default_factory=dict)
    _measured: dict[str, tuple[int, int]] = field(default_factory=dict)
    _stored: int = 0

    def find(self, snapshot: Snapshot) -> list[Match]:
        """Every matching entry (path, node), in the order of a depth-first walk; a
        snapshot whose shared trees expand past what it accounts for is refused
        (``SnapshotTooLarge``), as restore and ls refuse it."""
        extent = measure(self._nodes, snapshot.tree, self._measured)
        self._stored += extent.stored  # each tree measured once, across snapshots
        check_extent(snapshot, Extent(extent.entries, extent.depth, self._stored), snapshot.tree)
        return self._below(snapshot.tree, b"")

    def _nodes(self, tree_id: str) -> Iterator[Node]:
        text = self.repo.load_tree_text(tree_id)
        return (n for n in iter_entries(text, f"tree {tree_id}") if isinstance(n, Node))

    def _below(self, root: str, root_path: bytes) -> list[Match]:
        """Matches below a tree, children searched before their parent, without recursion
        (a tree may be deeper than Python's stack)."""
        loaded: dict[tuple[str, bytes], list[Node]] = {}
        stack = [(root, root_path)]
        while stack:
            key = stack[-1]
            if key in self._done:
                stack.pop()
                continue
            if key not in loaded:
                tree_id = key[0]
                loaded[key] = decode_tree(self.repo.load_tree_document(tree_id), f"tree {tree_id}")
            nodes = loaded[key]
            pending = [
                (n.subtree, key[1] + b"/" + n.name)
                for n in nodes
                if n.type == "dir"
                and n.subtree
                and (n.subtree, key[1] + b"/" + n.name) not in self._done
            ]
            if pending:
                stack.extend(pending)
                continue
            found: list[Match] = []
            for node in nodes:
                path = key[1] + b"/" + node.name
                if self.matcher.excludes(path, node.name):
                    found.append((path, node))
                if node.type == "dir" and node.subtree:
                    found.extend(self._done[(node.subtree, path)])
            self._done[key] = found
            del loaded[key]
            stack.pop()
        return self._done[(root, root_path)]
