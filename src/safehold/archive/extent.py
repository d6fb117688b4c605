"""How far a snapshot's trees expand: entries and depth, from each tree read once.

Trees are shared by id (an unchanged directory is stored once), so a few small trees that
name each other can stand for 2^40 paths: a walk by path would never end. The extent is
computed over the tree graph, each tree once, and a walk by path (restore, ls) refuses a
snapshot that expands to more entries than it accounts for (``allowance``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from safehold.archive.tree import BadEntry, Node, iter_entries
from safehold.errors import CorruptObject, SafeholdError, SnapshotTooLarge
from safehold.repo.snapshot import Snapshot

__all__ = [
    "MAX_ENTRIES",
    "NOTHING_STORED",
    "Extent",
    "TreeEntries",
    "allowance",
    "bounded",
    "check_extent",
    "measure",
    "measure_graph",
]

T = TypeVar("T")
MAX_ENTRIES = 1 << 32  # whatever a snapshot declares, no walk goes further
ENTRY_MARGIN = 1_000_000  # symlinks and other entries the summary does not count
STORED_REPEATS = 16  # snapshots without a summary (data sources) may repeat a directory
_DECLARED = ("total_files_processed", "dirs_new", "dirs_changed", "dirs_unmodified")


@dataclass(frozen=True)
class Extent:
    entries: int  # paths below the tree, every repetition of a shared tree counted
    depth: int  # directory levels below the tree
    stored: int  # entries of the distinct trees: what is actually stored


NOTHING_STORED = Extent(0, 0, 0)  # for a bound from the snapshot's summary alone


def measure(
    load: Callable[[str], Iterable[Node]],
    root: str,
    done: dict[str, tuple[int, int]] | None = None,
) -> Extent:
    """The extent below ``root``; a tree that cannot be loaded counts as empty (whoever
    walks it reports it). ``done`` keeps measured trees across calls (then ``stored``
    counts only the trees new to it)."""

    def entry(tree_id: str) -> tuple[int, list[str]]:
        try:
            nodes = list(load(tree_id))
        except (SafeholdError, ValueError):
            return 0, []
        return len(nodes), [n.subtree for n in nodes if n.type == "dir" and n.subtree]

    return measure_graph(entry, root, done)


def measure_graph(
    entry: Callable[[str], tuple[int, list[str]]],
    root: str,
    done: dict[str, tuple[int, int]] | None = None,
) -> Extent:
    """The extent below ``root`` of a graph given as ``entry(tree) -> (entries, subtrees)``,
    each tree asked once. Post-order with an explicit stack: trees may be deep."""
    done = {} if done is None else done
    pending: dict[str, tuple[int, list[str]]] = {}  # expanded, waiting for subtrees
    stored = 0
    stack = [root]
    while stack:
        tree_id = stack[-1]
        if tree_id in done:
            stack.pop()
            continue
        if tree_id not in pending:
            own, subs = entry(tree_id)
            stored += own
            if any(
                s == tree_id or s in pending for s in subs
            ):  # ids are content hashes: only a forgery
                raise CorruptObject(f"tree {tree_id}", "trees name each other in a cycle")
            pending[tree_id] = (own, subs)
            stack.extend(s for s in subs if s not in done)
            continue
        own, subs = pending.pop(tree_id)
        entries = own + sum(done[s][0] for s in subs)
        depth = 1 + max(done[s][1] for s in subs) if subs else 0
        done[tree_id] = (entries, depth)
        stack.pop()
    entries, depth = done[root]
    return Extent(entries, depth, stored)


def allowance(snapshot: Snapshot | None, extent: Extent) -> int:
    """The entries a snapshot accounts for: what its backup counted, what is stored (a
    few times over: identical directories are stored once), and a margin."""
    summary = snapshot.summary if snapshot is not None else {}
    declared = sum(v for k in _DECLARED if isinstance(v := summary.get(k, 0), int) and v > 0)
    return min(MAX_ENTRIES, declared + STORED_REPEATS * extent.stored + ENTRY_MARGIN)


class TreeEntries:
    """Trees parsed while measuring, kept for the walk that follows (up to ``budget``
    bytes of their text; parsed, an entry takes about three times its text): measuring
    first then costs no second read or parse of a snapshot's trees unless they are large.
    """

    def __init__(self, load: Callable[[str], str], budget: int = 12 << 20) -> None:
        self._load = load
        self._budget = budget
        self._kept: dict[str, tuple[list[Node | BadEntry], int]] = {}

    def keep(self, tree_id: str) -> Iterable[Node | BadEntry]:
        """A tree's entries for measuring, kept while the budget lasts; a larger tree is
        parsed one entry at a time (``CorruptObject`` when the text is no tree at all)."""
        kept = self._kept.get(tree_id)
        if kept is not None:
            return kept[0]
        text = self._load(tree_id)
        if len(text) > self._budget:
            return iter_entries(text, f"tree {tree_id}")
        entries = list(iter_entries(text, f"tree {tree_id}"))
        self._kept[tree_id] = (entries, len(text))
        self._budget -= len(text)
        return entries

    def take(self, tree_id: str) -> Iterator[Node | BadEntry]:
        """A tree's entries for the walk: kept ones are handed over (and forgotten), others
        read and parsed one at a time."""
        kept = self._kept.pop(tree_id, None)
        if kept is None:
            return iter_entries(self._load(tree_id), f"tree {tree_id}")
        self._budget += kept[1]
        return iter(kept[0])


def bounded(items: Iterable[T], limit: int, what: str) -> Iterator[T]:
    """``items``, refused (``SnapshotTooLarge``) past ``limit`` of them: for walks that
    read trees lazily and so cannot measure first (diff)."""
    for count, item in enumerate(items):
        if count >= limit:
            raise SnapshotTooLarge(what, f"over {limit}", limit)
        yield item


def check_extent(snapshot: Snapshot | None, extent: Extent, tree_id: str) -> None:
    """``SnapshotTooLarge`` when walking the snapshot would not end in reasonable time."""
    limit = allowance(snapshot, extent)
    if extent.entries > limit:
        shown = (
            f"2^{extent.entries.bit_length() - 1}" if extent.entries > 1 << 40 else extent.entries
        )
        raise SnapshotTooLarge(snapshot.short_id if snapshot else f"tree {tree_id}", shown, limit)
