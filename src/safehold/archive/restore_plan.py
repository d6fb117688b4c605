"""``restore --dry-run``: what a restore into a target would do, without doing it.

restic's dry run: each entry the restore would take is compared with what is in the
target now, by the rules of archive/restore.py. ``new``: not there, would be written;
``overwrite``: there, would be replaced (--overwrite always, or if-changed and it
changed); ``keep``: there and kept by --overwrite never or if-changed; ``delete``: an
entry of another kind in the way of a directory, removed to make room (restore deletes
nothing else: files the snapshot does not hold stay); ``error``: the restore would
refuse this entry (a directory in the way of a file; an unsafe name). Existing
directories that are reused are not listed. Nothing is written and no data is read:
only the trees.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from safehold.archive.extent import check_extent, measure
from safehold.archive.restore import RestoreOptions
from safehold.archive.restore_select import Selection
from safehold.archive.tree import Node, decode_entries, safe_name
from safehold.errors import InvalidPath
from safehold.repo.limits import MAX_DEPTH
from safehold.repo.repository import Repository

__all__ = ["Action", "PlannedEntry", "plan_restore"]

Action = Literal["new", "overwrite", "keep", "delete", "error"]


@dataclass(frozen=True)
class PlannedEntry:
    action: Action
    path: bytes  # as in the snapshot
    node: Node
    reason: str = ""

    @property
    def size(self) -> int:
        """Bytes the restore would write for it."""
        return self.node.size if self.action in ("new", "overwrite") else 0


def plan_restore(
    repo: Repository, tree_id: str, target: str, options: RestoreOptions
) -> Iterator[PlannedEntry]:
    """Each entry's fate, depth first in the order restore takes them. Iterative. Refused
    where restore refuses: a tree that expands too far, directories too deep."""
    check_extent(None, measure(lambda t: _entries(repo, t), tree_id), tree_id)
    select = Selection(
        options.includes, options.excludes, iincludes=options.iincludes, iexcludes=options.iexcludes
    )
    root = os.fsencode(target)
    # (snapshot path, target path, entries, whether the target directory exists already)
    stack = [(b"", root, _entries(repo, tree_id), os.path.isdir(root))]
    while stack:
        base, there, entries, existing = stack[-1]
        node = next(entries, None)
        if node is None:
            stack.pop()
            continue
        path = base + b"/" + node.name
        try:
            name = safe_name(node.name)
        except InvalidPath as exc:
            yield PlannedEntry("error", path, node, str(exc))
            continue
        choice = select.of(path)
        if choice == "skip" or (choice == "descend" and node.type != "dir"):
            continue
        if node.type == "dir" and len(stack) > MAX_DEPTH:
            yield PlannedEntry("error", path, node, f"deeper than {MAX_DEPTH} directory levels")
            continue
        place = os.path.join(there, name)
        old = _lstat(place) if existing else None
        if node.type != "dir":
            yield _for_entry(node, path, old, options.overwrite)
            continue
        if old is not None and not stat.S_ISDIR(old.st_mode):
            if options.overwrite == "never":
                yield PlannedEntry("error", path, node, "a non-directory is in the way")
                continue
            yield PlannedEntry("delete", path, node, "replaced by a directory")
            old = None
        if old is None:
            yield PlannedEntry("new", path, node)
        children = _entries(repo, node.subtree) if node.subtree else iter(())
        stack.append((path, place, children, old is not None))


def _for_entry(node: Node, path: bytes, old: os.stat_result | None, overwrite: str) -> PlannedEntry:
    if old is None:
        return PlannedEntry("new", path, node)
    if overwrite == "never":
        return PlannedEntry("keep", path, node, "exists (--overwrite never)")
    if (
        overwrite == "if-changed"
        and node.type == "file"
        and stat.S_ISREG(old.st_mode)
        and (old.st_size, old.st_mtime_ns) == (node.size, node.mtime_ns)
    ):
        return PlannedEntry("keep", path, node, "unchanged (same size and mtime)")
    if stat.S_ISDIR(old.st_mode):
        return PlannedEntry("error", path, node, "a directory is in the way")
    return PlannedEntry("overwrite", path, node)


def _entries(repo: Repository, tree_id: str) -> Iterator[Node]:
    nodes, _ = decode_entries(repo.load_tree_document(tree_id), f"tree {tree_id}")
    return iter(nodes)


def _lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
