"""``check``: prove that every snapshot can be restored, without restoring it.

The structure check reads the index, lists the packs and walks every tree once; with
``read_data`` (or a subset of it) every blob of the chosen packs is also downloaded,
decrypted, decompressed and its keyed id compared. Each problem names what is damaged
(pack, blob, tree) and which snapshots and file paths it costs, so the operator knows
what a repair would have to bring back. Nothing is printed here: the result is returned.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from safehold.archive.extent import check_extent, measure_graph
from safehold.archive.tree import BadEntry, Node, iter_entries, safe_name
from safehold.errors import (
    CorruptObject,
    InvalidArgument,
    InvalidPath,
    NotFound,
    SafeholdError,
    SnapshotTooLarge,
)
from safehold.repo.crypto import content_hash
from safehold.repo.index import BlobLocation, Index, document_entries
from safehold.repo.limits import MAX_DEPTH, MAX_PACK_HEADER_BYTES, MAX_TREE_BYTES
from safehold.repo.repository import Repository, pack_key
from safehold.repo.snapshot import Snapshot

__all__ = ["CheckResult", "DataSubset", "Problem", "check", "parse_subset"]

Severity = Literal["error", "warning"]
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_BUCKET = re.compile(r"^(\d+)/(\d+)$")
MAX_EXAMPLE_PATHS = 20  # per problem: enough to act on, bounded whatever the trees share
MAX_BAD_ENTRIES_NAMED = 10  # per tree; the rest are counted in one more problem


@dataclass(frozen=True)
class Problem:
    """One finding: what is wrong with which object, and what it costs."""

    severity: Severity
    subject: str  # the damaged object: "data/ab/ab…", "blob <id>", "tree <id>", "snapshots/<id>"
    message: str
    snapshots: tuple[str, ...] = ()  # ids of the snapshots that lose something
    paths: tuple[str, ...] = ()  # the files and directories they lose

    def to_doc(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "snapshots": list(self.snapshots),
            "paths": list(self.paths),
        }


@dataclass
class CheckResult:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    packs: int = 0
    snapshots: int = 0
    trees: int = 0
    packs_read: list[str] = field(default_factory=list)
    blobs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class DataSubset:
    """Which packs ``read_data`` reads: a share picked at random, or one of m buckets.

    Buckets follow restic: a pack is in bucket ``first byte of its id % m`` (0-based), so
    running ``1/7`` … ``7/7`` on seven days reads every pack exactly once.
    """

    percent: float = 100.0
    bucket: tuple[int, int] | None = None

    def select(self, packs: list[str]) -> list[str]:
        ordered = sorted(packs)
        if self.bucket is not None:
            n, m = self.bucket
            return [p for p in ordered if int(p[:2], 16) % m == n - 1]
        if self.percent >= 100:
            return ordered
        count = math.ceil(len(ordered) * self.percent / 100)
        return sorted(random.sample(ordered, count))


def parse_subset(spec: str) -> DataSubset:
    """``"10%"`` or ``"n/m"`` (1 <= n <= m), else ``InvalidArgument`` saying what is accepted."""
    text = spec.strip()
    if match := _PERCENT.match(text):
        percent = float(match[1])
        if 0 < percent <= 100:
            return DataSubset(percent=percent)
    elif match := _BUCKET.match(text):
        n, m = int(match[1]), int(match[2])
        if 1 <= n <= m:
            return DataSubset(bucket=(n, m))
    raise InvalidArgument(
        f"invalid read-data subset {spec!r}: give a percentage in (0, 100] like '10%',"
        " or 'n/m' with 1 <= n <= m like '2/7'"
    )


@dataclass
class _Cause:
    """A problem whose cost (snapshots, paths) is known only after the tree walk."""

    severity: Severity
    subject: str
    message: str
    snapshots: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)  # examples: at most MAX_EXAMPLE_PATHS

    def costs(self, snapshot_id: str, path: bytes) -> None:
        self.snapshots.add(snapshot_id)
        if len(self.paths) < MAX_EXAMPLE_PATHS:
            self.paths.add(os.fsdecode(path or b"/"))


class _Checker:
    def __init__(self, repo: Repository, subset: DataSubset | None) -> None:
        self.repo = repo
        self.subset = subset
        self.result = CheckResult()
        self.causes: list[_Cause] = []
        self.indexed: dict[str, list[BlobLocation]] = defaultdict(list)  # every entry, by pack
        self.blob_ids: dict[str, list[bytes]] = defaultdict(list)
        self.bad_blobs: dict[bytes, _Cause] = {}  # unreadable where the index points
        # the tree graph, kept to name the paths a damaged blob or tree costs
        self.children: dict[str, list[tuple[bytes, str]]] = {}
        self.sizes: dict[str, int] = {}  # entries per tree, for the snapshots' extent
        self.sizes_on_store: dict[str, int] = {}  # packs as listed
        # files with links > 1, by tree: (name, (device, inode), content)
        self.links: dict[str, list[tuple[bytes, tuple[int, int], tuple[bytes, ...]]]] = defaultdict(
            list
        )
        self.damage: dict[str, list[tuple[bytes, _Cause]]] = defaultdict(list)
        self.failed_trees: dict[str, _Cause] = {}

    def cause(self, severity: Severity, subject: str, message: str) -> _Cause:
        found = _Cause(severity, subject, message)
        self.causes.append(found)
        return found

    def run(self) -> CheckResult:
        self.load_index()
        present = self.check_packs()
        if self.subset is not None:
            for pack in self.subset.select([p for p in self.indexed if p in present]):
                self.read_pack(pack)
        snapshots = self.repo.list_snapshots()
        for damaged in self.repo.damaged_snapshots:
            self.cause("error", _subject(damaged), f"snapshot cannot be loaded: {damaged}")
        self.result.snapshots = len(snapshots)
        for snapshot in snapshots:
            self.walk(snapshot.tree)
        self.attribute(snapshots)
        self.finish()
        return self.result

    # ---- index and packs ------------------------------------------------------------

    def load_index(self) -> None:
        """Each index document on its own, so one bad document does not hide the rest."""
        self.repo.index = Index()
        for info in sorted(self.repo.store.list("index/"), key=lambda i: i.key):
            index_id = info.key.removeprefix("index/")
            try:
                doc = self.repo.load_index_document(index_id)
                entries = list(document_entries(doc, info.key))
            except (CorruptObject, NotFound) as exc:
                self.cause("error", info.key, f"index document cannot be loaded: {exc}")
                continue
            self.repo.index.add_document(doc, info.key)
            for blob_id, loc in entries:
                self.indexed[loc.pack].append(loc)
                self.blob_ids[loc.pack].append(blob_id)

    def check_packs(self) -> set[str]:
        """Indexed packs must exist and be long enough; packs no index names are a warning."""
        on_store = {
            info.key.rsplit("/", 1)[-1]: info.size for info in self.repo.store.list("data/")
        }
        self.sizes_on_store = on_store
        self.result.packs = len(self.indexed)
        for pack, entries in sorted(self.indexed.items()):
            size = on_store.get(pack)
            needed = max(e.offset + e.length for e in entries)
            if size is None:
                self.lose_pack(pack, f"pack is missing ({len(entries)} blobs lost)")
            elif size < needed:
                self.lose_pack(
                    pack, f"pack is truncated: {size} bytes, the index needs at least {needed}"
                )
        for pack in sorted(on_store.keys() - self.indexed.keys()):
            self.cause(
                "warning",
                pack_key(pack),
                "unreferenced pack: no index names it (a killed backup leaves these;"
                " prune removes them, repair index adds them)",
            )
        return {p for p, size in on_store.items() if p in self.indexed}

    def lose_pack(self, pack: str, message: str) -> None:
        found = self.cause("error", pack_key(pack), message)
        for blob_id in self.blob_ids[pack]:
            self.mark_bad(blob_id, pack, found)

    def mark_bad(self, blob_id: bytes, pack: str, found: _Cause) -> None:
        """Only a copy the index would serve counts; a bad duplicate costs nothing."""
        loc = self.repo.index.get(blob_id)
        if loc is not None and loc.pack == pack:
            self.bad_blobs.setdefault(blob_id, found)

    def read_pack(self, pack: str) -> None:
        """Compare the header with the index, then authenticate every blob of one read."""
        name = pack_key(pack)
        self.result.packs_read.append(pack)
        locations = self.indexed[pack]
        try:
            header = self.repo.read_pack_header(pack)
        except SafeholdError as exc:
            self.cause("error", name, f"pack header cannot be read: {exc}")
        else:
            in_header = {e.id: e for e in header}
            for blob_id, loc in zip(self.blob_ids[pack], locations, strict=True):
                entry = in_header.get(blob_id)
                if entry is None or (entry.type, entry.offset, entry.length, entry.raw_length) != (
                    loc.type,
                    loc.offset,
                    loc.length,
                    loc.raw_length,
                ):
                    self.mark_bad(
                        blob_id,
                        pack,
                        self.cause(
                            "error",
                            f"{name} (blob {blob_id.hex()})",
                            "index entry does not match the pack header",
                        ),
                    )
        largest = self.repo.config.pack_size + MAX_TREE_BYTES + MAX_PACK_HEADER_BYTES
        if self.sizes_on_store.get(pack, 0) > largest:  # read whole, it would be held whole
            self.cause(
                "error",
                name,
                f"pack of {self.sizes_on_store[pack]} bytes, more than the {largest} a pack of"
                " this repository can hold: not read",
            )
            return
        try:
            data = self.repo.store.get(name)
        except NotFound:
            self.lose_pack(pack, "pack disappeared during the check")
            return
        except SafeholdError as exc:
            self.lose_pack(pack, f"pack cannot be read: {exc}")
            return
        if content_hash(data) != pack:
            self.cause("error", name, "pack content does not match its id")
        for blob_id, loc in zip(self.blob_ids[pack], locations, strict=True):
            self.result.blobs_read += 1
            try:
                self.repo.decode_blob(blob_id, loc, data[loc.offset : loc.offset + loc.length])
            except CorruptObject as exc:
                found = self.cause("error", f"{name} (blob {blob_id.hex()})", exc.args[1])
                self.mark_bad(blob_id, pack, found)

    # ---- trees ----------------------------------------------------------------------

    def walk(self, root: str) -> None:
        """Every tree below ``root`` not seen before, with an explicit stack, never recursion.

        Each tree is read once, however many snapshots and paths share it: the work is
        bounded by what is stored, not by the paths it expands to.
        """
        stack = [root]
        while stack:
            tree_id = stack.pop()
            if tree_id in self.children or tree_id in self.failed_trees:
                continue
            try:
                entries = iter_entries(self.repo.load_tree_text(tree_id), f"tree {tree_id}")
            except (CorruptObject, ValueError) as exc:
                blob = _blob_id(tree_id)
                self.failed_trees[tree_id] = self.bad_blobs.get(blob) or self.cause(
                    "error", f"tree {tree_id}", f"tree cannot be loaded: {exc}"
                )
                continue
            self.result.trees += 1
            self.children[tree_id] = []
            self.sizes[tree_id] = 0
            bad = 0
            for entry in entries:
                if isinstance(entry, BadEntry):
                    bad += 1
                    if bad <= MAX_BAD_ENTRIES_NAMED:
                        self.bad_entry(tree_id, entry.name, entry.reason)
                    continue
                self.sizes[tree_id] += 1
                stack.extend(self.check_node(tree_id, entry))
            if bad > MAX_BAD_ENTRIES_NAMED:
                self.bad_entry(
                    tree_id, b"", f"{bad - MAX_BAD_ENTRIES_NAMED} more bad entries in this tree"
                )

    def bad_entry(self, tree_id: str, name: bytes, reason: str) -> None:
        """An entry restore refuses: it costs its path in every snapshot holding the tree."""
        found = self.cause("error", f"tree {tree_id}", f"bad entry: {reason}")
        self.damage[tree_id].append((name, found))

    def check_node(self, tree_id: str, node: Node) -> list[str]:
        """Flag what restore would refuse or report about one node; its subtree, if any."""
        try:
            safe_name(node.name)
        except InvalidPath as exc:
            self.bad_entry(tree_id, node.name, str(exc))
            return []
        if node.type == "dir" and node.subtree:
            self.children[tree_id].append((node.name, node.subtree))
            return [node.subtree]
        if node.type == "file":
            if node.links > 1:
                key = (node.device, node.inode)
                self.links[tree_id].append((node.name, key, tuple(node.content)))
            stored = 0
            for blob_id in node.content:
                if (lost := self.blob_damage(blob_id)) is not None:
                    self.damage[tree_id].append((node.name, lost))
                    return []
                stored += self.repo.index.get(blob_id).raw_length  # type: ignore[union-attr]
            if stored != node.size:
                self.bad_entry(
                    tree_id,
                    node.name,
                    f"size {node.size} disagrees with its content ({stored} bytes);"
                    " restore writes the content as stored",
                )
        return []

    def blob_damage(self, blob_id: bytes) -> _Cause | None:
        found = self.bad_blobs.get(blob_id)
        if found is None and blob_id not in self.repo.index:
            found = self.cause("error", f"blob {blob_id.hex()}", "blob is not in the index")
            self.bad_blobs[blob_id] = found
        return found

    def attribute(self, snapshots: list[Snapshot]) -> None:
        """Name the snapshots and a few example paths behind each damage, descending only
        where it lies, each tree once per snapshot (shared trees can stand for 2^40
        paths). Also what restore refuses whole: a snapshot that expands too far, a
        directory too deep."""
        parents: dict[str, set[str]] = defaultdict(set)
        for tree_id, kids in self.children.items():
            for _, sub in kids:
                parents[sub].add(tree_id)
        tainted = _with_ancestors(
            [*self.damage, *(t for failed in self.failed_trees for t in parents[failed])], parents
        )
        linked = _with_ancestors(list(self.links), parents)
        for snapshot in snapshots:
            root = snapshot.tree
            if root in self.failed_trees:
                self.failed_trees[root].costs(snapshot.id, b"/")
                continue
            self.check_extent(snapshot)
            if root in linked:
                self.check_links(snapshot, linked)
            seen: set[str] = set()
            stack: list[tuple[str, bytes]] = [(root, b"")] if root in tainted else []
            while stack:
                tree_id, base = stack.pop()
                if tree_id in seen:
                    continue
                seen.add(tree_id)
                for name, found in self.damage.get(tree_id, []):
                    found.costs(snapshot.id, base + b"/" + name)
                for name, sub in self.children.get(tree_id, []):
                    if sub in self.failed_trees:
                        self.failed_trees[sub].costs(snapshot.id, base + b"/" + name)
                    elif sub in tainted and sub not in seen:
                        stack.append((sub, base + b"/" + name))

    def check_links(self, snapshot: Snapshot, linked: set[str]) -> None:
        """Restore links entries of one (device, inode) only when their content lists are
        equal, and reports the others: flag each such group, with example paths."""
        contents: dict[tuple[int, int], dict[tuple[bytes, ...], bytes]] = defaultdict(dict)
        seen: set[str] = set()
        stack: list[tuple[str, bytes]] = [(snapshot.tree, b"")]
        while stack:
            tree_id, base = stack.pop()
            if tree_id in seen:
                continue
            seen.add(tree_id)
            for name, key, content in self.links.get(tree_id, []):
                contents[key].setdefault(content, base + b"/" + name)
            stack.extend(
                (sub, base + b"/" + name)
                for name, sub in self.children.get(tree_id, [])
                if sub in linked and sub not in seen
            )
        for (device, inode), paths in contents.items():
            if len(paths) > 1:
                found = self.cause(
                    "error",
                    f"snapshots/{snapshot.id}",
                    f"{len(paths)} different contents for one file (device {device}, inode"
                    f" {inode}): restore makes them separate files, not hard links",
                )
                for path in paths.values():
                    found.costs(snapshot.id, path)

    def check_extent(self, snapshot: Snapshot) -> None:
        """Restore and ls refuse a snapshot that expands past what it accounts for, and
        leave out directories deeper than MAX_DEPTH: so does check."""
        extent = measure_graph(self.graph_entry, snapshot.tree)
        try:
            check_extent(snapshot, extent, snapshot.tree)
        except SnapshotTooLarge as exc:
            self.cause("error", f"snapshots/{snapshot.id}", str(exc)).costs(snapshot.id, b"/")
        if extent.depth > MAX_DEPTH:
            found = self.cause(
                "error",
                f"snapshots/{snapshot.id}",
                f"directories {extent.depth} levels deep; restore leaves out those deeper"
                f" than {MAX_DEPTH}",
            )
            found.costs(snapshot.id, b"/")

    def graph_entry(self, tree_id: str) -> tuple[int, list[str]]:
        return self.sizes.get(tree_id, 0), [sub for _, sub in self.children.get(tree_id, [])]

    def finish(self) -> None:
        for found in self.causes:
            problem = Problem(
                found.severity,
                found.subject,
                found.message,
                tuple(sorted(found.snapshots)),
                tuple(sorted(found.paths)),
            )
            (self.result.errors if found.severity == "error" else self.result.warnings).append(
                problem
            )


def check(repo: Repository, read_data: DataSubset | None = None) -> CheckResult:
    """Check ``repo`` (its index is reloaded here); ``read_data`` chooses packs to read whole."""
    return _Checker(repo, read_data).run()


def _with_ancestors(trees: list[str], parents: dict[str, set[str]]) -> set[str]:
    """``trees`` and every tree above one of them."""
    found: set[str] = set()
    while trees:
        tree_id = trees.pop()
        found.add(tree_id)
        trees.extend(p for p in parents[tree_id] if p not in found)
    return found


def _blob_id(tree_id: str) -> bytes:
    try:
        return bytes.fromhex(tree_id)
    except ValueError:
        return b""


def _subject(exc: SafeholdError) -> str:
    return str(exc.args[0]) if exc.args else "snapshots/"
