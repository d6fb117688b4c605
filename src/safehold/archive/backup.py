"""Backing up file trees: scan, compare with the parent snapshot, chunk, save, build trees.

The walk runs depth first in one thread and reads each changed file through the chunker;
compression, encryption and uploads run in the writer's pools. A file whose size, mtime,
ctime and inode match the parent snapshot is not read again (restic's rule).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from safehold.archive.chunker import Chunker
from safehold.archive.excludes import Excluder
from safehold.archive.metadata import group_name, read_xattrs, user_name
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.tree import Node, decode_tree, encode_tree
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.writer import BlobSaver

__all__ = ["Archiver", "BackupStats", "normalize_paths"]

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFSOCK: "socket",
}
READ_ATTEMPTS = 3


class FileChangedError(Exception):
    """The file changed while it was read; storing it would mix old and new data."""


@dataclass
class BackupStats:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Target:
    """A node of the virtual tree that joins the backed-up paths under the root."""

    children: dict[bytes, _Target] = field(default_factory=dict)
    is_target: bool = False


def normalize_paths(paths: list[str]) -> list[bytes]:
    """Absolute, normalised, without paths nested in another one of the list."""
    result: list[bytes] = []
    for p in sorted({os.path.abspath(os.fsencode(p)) for p in paths}):
        if not any(p == r or p.startswith(r.rstrip(b"/") + b"/") for r in result):
            result.append(p)
    return result


class Archiver:
    def __init__(
        self,
        repo: Repository,
        saver: BlobSaver,
        excluder: Excluder,
        *,
        one_file_system: bool = False,
        force: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self._repo = repo
        self._saver = saver
        self._excluder = excluder
        self._one_fs = one_file_system
        self._force = force
        self._progress = progress or NullProgress()
        self._chunker = Chunker(repo.config)
        self._hardlinks: dict[tuple[int, int], list[bytes]] = {}
        self._root_devices: set[int] = set()
        self.stats = BackupStats()

    # ---- entry points ------------------------------------------------------------------

    def backup_paths(self, paths: list[bytes], parent_tree: str | None) -> str:
        """Save ``paths`` (absolute, normalised) and return the root tree id."""
        root = _Target()
        for path in paths:
            node = root
            for part in [p for p in path.split(b"/") if p]:
                node = node.children.setdefault(part, _Target())
            node.is_target = True
        for path in paths:
            try:
                self._root_devices.add(os.lstat(path).st_dev)
            except OSError:
                continue
        if root.is_target:  # "/" itself
            return self._save_dir(b"/", self._parent_nodes(parent_tree))
        return self._save_virtual(b"", root, parent_tree)

    def backup_stream(self, stream: BinaryIO, path: bytes) -> str:
        """Save one stream as a file at ``path`` (absolute) and return the root tree id."""
        parts = [p for p in path.split(b"/") if p]
        now_ns = time.time_ns()
        uid, gid = os.getuid(), os.getgid()
        size, content = self._save_content(stream)
        node = Node(
            name=parts[-1],
            type="file",
            mode=0o600,
            uid=uid,
            gid=gid,
            user=user_name(uid),
            group=group_name(gid),
            mtime_ns=now_ns,
            ctime_ns=now_ns,
            size=size,
            content=content,
        )
        self.stats.files_new += 1
        self._count_file(size)
        for name in reversed(parts[:-1]):
            subtree = self._save_tree([node])
            node = Node(
                name=name,
                type="dir",
                mode=0o755,
                uid=uid,
                gid=gid,
                user=user_name(uid),
                group=group_name(gid),
                mtime_ns=now_ns,
                ctime_ns=now_ns,
                subtree=subtree,
            )
        return self._save_tree([node])

    # ---- trees ------------------------------------------------------------------------

    def _save_tree(self, nodes: list[Node]) -> str:
        blob_id, _ = self._saver.save(BlobType.TREE, encode_tree(nodes))
        return blob_id.hex()

    def _parent_nodes(self, tree_id: str | None) -> dict[bytes, Node]:
        if tree_id is None:
            return {}
        what = f"tree {tree_id}"
        return {n.name: n for n in decode_tree(self._repo.load_tree_document(tree_id), what)}

    def _save_virtual(self, prefix: bytes, target: _Target, parent_tree: str | None) -> str:
        parents = self._parent_nodes(parent_tree)
        nodes = []
        for name, child in sorted(target.children.items()):
            path = prefix + b"/" + name
            parent = parents.get(name)
            if child.is_target:
                node = self._save_entry(path, name, parent)
            else:
                node = self._virtual_dir(path, name, child, parent)
            if node is not None:
                nodes.append(node)
        return self._save_tree(nodes)

    def _virtual_dir(
        self, path: bytes, name: bytes, target: _Target, parent: Node | None
    ) -> Node | None:
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc.strerror or str(exc))
            return None
        node = self._node_from_stat(name, path, st)
        parent_subtree = parent.subtree if parent and parent.type == "dir" else None
        node.subtree = self._save_virtual(path, target, parent_subtree)
        return node

    def _save_dir(self, path: bytes, parents: dict[bytes, Node]) -> str:
        nodes = []
        for name, st in self._list_dir(path):
            child_path = os.path.join(path, name)
            node = self._save_entry(child_path, name, parents.get(name), st)
            if node is not None:
                nodes.append(node)
        return self._save_tree(nodes)

    def _list_dir(self, path: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
        if self._excluder.is_cache_dir(path):
            entries = [b"CACHEDIR.TAG"]
        else:
            try:
                entries = sorted(os.listdir(path))
            except OSError as exc:
                self._error(path, exc.strerror or str(exc))
                return
        for name in entries:
            child = os.path.join(path, name)
            if self._excluder.excludes(child, name):
                continue
            try:
                yield name, os.lstat(child)
            except OSError as exc:
                self._error(child, exc.strerror or str(exc))

    # ---- entries ----------------------------------------------------------------------

    def _save_entry(
        self, path: bytes, name: bytes, parent: Node | None, st: os.stat_result | None = None
    ) -> Node | None:
        try:
            st = st or os.lstat(path)
            node = self._node_from_stat(name, path, st)
            if node.type == "dir":
                self._fill_dir(node, path, st, parent)
            elif node.type == "file":
                self._fill_file(node, path, st, parent)
            elif node.type == "symlink":
                node.target = os.readlink(path)
        except FileChangedError as exc:
            self._error(path, str(exc))
            return None
        except OSError as exc:
            self._error(path, exc.strerror or str(exc))
            return None
        return node

    def _node_from_stat(self, name: bytes, path: bytes, st: os.stat_result) -> Node:
        return Node(
            name=name,
            type=_TYPES.get(stat.S_IFMT(st.st_mode), "file"),
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            user=user_name(st.st_uid),
            group=group_name(st.st_gid),
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            inode=st.st_ino,
            device=st.st_dev,
            links=st.st_nlink,
            rdev=st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0,
            xattrs=read_xattrs(path),
        )

    def _fill_dir(self, node: Node, path: bytes, st: os.stat_result, parent: Node | None) -> None:
        if self._one_fs and self._root_devices and st.st_dev not in self._root_devices:
            node.subtree = self._save_tree([])  # a mount point: kept, but not entered
        else:
            parent_subtree = parent.subtree if parent and parent.type == "dir" else None
            node.subtree = self._save_dir(path, self._parent_nodes(parent_subtree))
        if parent is None or parent.type != "dir":
            self.stats.dirs_new += 1
        elif parent.subtree == node.subtree and parent.mtime_ns == node.mtime_ns:
            self.stats.dirs_unmodified += 1
        else:
            self.stats.dirs_changed += 1

    def _fill_file(self, node: Node, path: bytes, st: os.stat_result, parent: Node | None) -> None:
        node.size = st.st_size
        link_key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and link_key in self._hardlinks:
            node.content = self._hardlinks[link_key]
            self.stats.files_unmodified += 1
        elif not self._force and self._unchanged(parent, st):
            assert parent is not None
            node.content = parent.content
            self.stats.files_unmodified += 1
        else:
            node.size, node.content = self._read_file(path, st)
            if parent is None or parent.type != "file":
                self.stats.files_new += 1
            else:
                self.stats.files_changed += 1
        if st.st_nlink > 1:
            self._hardlinks[link_key] = node.content
        self._count_file(node.size)

    def _unchanged(self, parent: Node | None, st: os.stat_result) -> bool:
        return (
            parent is not None
            and parent.type == "file"
            and parent.size == st.st_size
            and parent.mtime_ns == st.st_mtime_ns
            and parent.ctime_ns == st.st_ctime_ns
            and parent.inode == st.st_ino
            and all(self._saver.known(c) for c in parent.content)
        )

    def _read_file(self, path: bytes, st: os.stat_result) -> tuple[int, list[bytes]]:
        """Read and save a file, again if it changed meanwhile; give up after a few tries."""
        for _ in range(READ_ATTEMPTS):
            fd = _open_for_reading(path)
            with os.fdopen(fd, "rb", buffering=0) as f:
                before = os.fstat(fd)
                if before.st_ino != st.st_ino:
                    raise FileChangedError("file was replaced while the backup ran")
                size, content = self._save_content(f)
                after = os.fstat(fd)
            if _same_version(before, after) and size == after.st_size:
                return size, content
        raise FileChangedError(f"file kept changing while it was read ({READ_ATTEMPTS} tries)")

    def _save_content(self, stream: BinaryIO) -> tuple[int, list[bytes]]:
        size, content = 0, []
        for chunk in self._chunker.chunks(stream):
            blob_id, _ = self._saver.save(BlobType.DATA, chunk)
            content.append(blob_id)
            size += len(chunk)
        return size, content

    def _count_file(self, size: int) -> None:
        self.stats.total_files_processed += 1
        self.stats.total_bytes_processed += size
        self._progress.advance(1, size)

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.stats.errors.append((text, message))
        self._progress.error(text, message)


def _open_for_reading(path: bytes) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)
    try:
        return os.open(path, flags)
    except PermissionError:
        return os.open(path, flags & ~getattr(os, "O_NOATIME", 0))


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def count_totals(paths: list[bytes], excluder: Excluder, stop: threading.Event) -> Iterator[int]:
    """Sizes of the files under ``paths``, for the progress bar's totals."""
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            if stop.is_set():
                return
            dirnames[:] = [
                d for d in dirnames if not excluder.excludes(os.path.join(dirpath, d), d)
            ]
            for name in filenames:
                full = os.path.join(dirpath, name)
                if excluder.excludes(full, name):
                    continue
                try:
                    yield os.lstat(full).st_size
                except OSError:
                    continue
