"""Backing up file trees: scan, compare with the parent snapshot, chunk, save, build trees.

The walk runs depth first in one thread and reads each changed file through the chunker;
compression, encryption and uploads run in the writer's pools. A file whose size, mtime,
ctime and inode match the parent snapshot is not read again (restic's rule).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from safehold.archive.chunker import Chunker
from safehold.archive.excludes import Excluder
from safehold.archive.metadata import group_name, read_xattrs, user_name
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.tree import NODE_TYPE_OF_MODE, Node, doc_name, encode_docs, node_doc
from safehold.errors import CorruptObject, InvalidArgument, StoreError
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.writer import BlobSaver

__all__ = ["Archiver", "BackupStats", "normalize_paths", "own_node"]

READ_ATTEMPTS = 3
RACY_WINDOW_NS = 2_000_000_000  # timestamps in whole seconds or milliseconds (FAT, some NFS)
FINE_RACY_WINDOW_NS = 250_000_000  # nanosecond timestamps from a ticking clock (ext4, xfs)
Doc = dict[str, Any]


class FileChangedError(Exception):
    """The file changed while it was read; storing it would mix old and new data."""


class FileReplacedError(FileChangedError):
    """Another file took the name (an editor's save by rename); worth one fresh look."""


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
    vanished: int = 0  # live mode: files gone between listing and reading, skipped
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


def split_missing(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The paths that exist, and (path as given, why) for each one that cannot be looked at:
    a snapshot records only what was read, and an error names the argument itself."""
    present: list[str] = []
    missing: list[tuple[str, str]] = []
    for path in paths:
        try:
            os.lstat(path)
        except OSError as exc:
            missing.append((path, exc.strerror or str(exc)))
        else:
            present.append(path)
    return present, missing


class Archiver:
    def __init__(
        self,
        repo: Repository,
        saver: BlobSaver,
        excluder: Excluder,
        *,
        one_file_system: bool = False,
        force: bool = False,
        parent_started_ns: int = 0,
        progress: Progress | None = None,
        live: bool = False,
    ) -> None:
        """``live``: the tree is a database's data directory inside its backup mode (as
        pg_basebackup reads it): a file that changes while it is read is stored as read,
        one that vanishes is skipped, since the database's log makes them consistent."""
        self._repo = repo
        self._saver = saver
        self._excluder = excluder
        self._one_fs = one_file_system
        self._force = force
        self._parent_started_ns = parent_started_ns
        self._progress = progress or NullProgress()
        self._live = live
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
        if not self._root_devices:
            # each vanished after split_missing saw it
            raise InvalidArgument("none of the paths to back up exists; nothing recorded")
        # Each directory level costs three Python frames; a path of 4096 bytes can be
        # 2048 levels deep. Python 3.11 calls between Python functions use no C stack.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 8 * 2048))
        try:
            if root.is_target:  # "/" itself
                return self._save_dir(b"/", parent_tree)
            return self._save_virtual(b"", root, parent_tree)
        finally:
            sys.setrecursionlimit(limit)

    def backup_stream(self, stream: BinaryIO, path: bytes) -> str:
        """Save one stream as a file at ``path`` (absolute) and return the root tree id."""
        parts = [p for p in path.split(b"/") if p]
        size, content = self._save_content(stream)
        node = own_node(parts[-1], "file", 0o600, size=size, content=content)
        self.stats.files_new += 1
        self._count_file(size)
        for name in reversed(parts[:-1]):
            subtree = self._save_tree([node_doc(node)])
            node = own_node(name, "dir", 0o755, subtree=subtree)
        return self._save_tree([node_doc(node)])

    # ---- trees ------------------------------------------------------------------------

    def _save_tree(self, docs: list[Doc]) -> str:
        blob_id, _ = self._saver.save(BlobType.TREE, encode_docs(docs))
        return blob_id.hex()

    def _parent_docs(self, tree_id: str | None) -> dict[bytes, Doc]:
        """The parent snapshot's entries of a directory, as stored, by name."""
        if tree_id is None:
            return {}
        try:
            nodes = self._repo.load_tree_document(tree_id).get("nodes")
            if not isinstance(nodes, list):
                raise CorruptObject(f"tree {tree_id}", "not a tree document")
            return {doc_name(d): d for d in nodes}
        except (CorruptObject, StoreError):
            # A damaged or lost parent only costs speed: compare with nothing, read all.
            return {}

    def _save_virtual(self, prefix: bytes, target: _Target, parent_tree: str | None) -> str:
        parents = self._parent_docs(parent_tree)
        docs = []
        for name, child in sorted(target.children.items()):
            path = prefix + b"/" + name
            parent = parents.get(name)
            if child.is_target:
                doc = self._save_entry(path, name, parent)
            else:
                doc = self._virtual_dir(path, name, child, parent)
            if doc is not None:
                docs.append(doc)
        return self._save_tree(docs)

    def _virtual_dir(
        self, path: bytes, name: bytes, target: _Target, parent: Doc | None
    ) -> Doc | None:
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc.strerror or str(exc))
            return None
        node = self._node_from_stat(name, path, st)
        node.subtree = self._save_virtual(path, target, _subtree_of(parent))
        return node_doc(node)

    def _save_dir(self, path: bytes, parent_tree: str | None) -> str:
        """Save a directory's tree; when every entry is as in the parent, reuse its tree."""
        parents = self._parent_docs(parent_tree)
        docs = []
        all_reused = True
        for name, child, st in self._list_dir(path):
            parent = parents.get(name)
            doc = self._save_entry(child, name, parent, st)
            if doc is not None:
                docs.append(doc)
            all_reused = all_reused and doc is not None and doc is parent
        if all_reused and parent_tree is not None and len(docs) == len(parents):
            return parent_tree
        return self._save_tree(docs)

    def _list_dir(self, path: bytes) -> Iterator[tuple[bytes, bytes, os.stat_result]]:
        """(name, path, lstat) of each entry not excluded, sorted by name."""
        if self._excluder.is_cache_dir(path):
            entries = [b"CACHEDIR.TAG"]
        else:
            try:
                entries = sorted(os.listdir(path))
            except OSError as exc:
                self._error(path, exc.strerror or str(exc))
                return
        prefix = path.rstrip(b"/") + b"/"
        excludes = self._excluder.excludes if self._excluder.active else None
        for name in entries:
            child = prefix + name
            if excludes is not None and excludes(child, name):
                continue
            try:
                yield name, child, os.lstat(child)
            except OSError as exc:
                self._error(child, exc.strerror or str(exc))

    # ---- entries ----------------------------------------------------------------------

    def _save_entry(
        self, path: bytes, name: bytes, parent: Doc | None, st: os.stat_result | None = None
    ) -> Doc | None:
        """The entry's node document: the parent's own when nothing changed (fast path)."""
        try:
            st = st or os.lstat(path)
            kind = NODE_TYPE_OF_MODE.get(stat.S_IFMT(st.st_mode), "file")
            same = parent is not None and parent.get("type") == kind and _same_stat(parent, st)
            if kind == "dir":
                return self._save_dir_entry(path, name, st, parent if same else None, parent)
            if kind == "file":
                if same and self._settled(st) and parent is not None:
                    content = self._known_content(parent)
                    if content is not None:
                        self._count_unmodified(st, content)
                        return parent
                try:
                    return node_doc(self._file_node(path, name, st, parent))
                except FileReplacedError:
                    st = os.lstat(path)  # the new file, once; a second swap is reported
                    if not stat.S_ISREG(st.st_mode):
                        raise
                    return node_doc(self._file_node(path, name, st, parent))
            if same:
                return parent
            node = self._node_from_stat(name, path, st)
            if kind == "symlink":
                node.target = os.readlink(path)
            return node_doc(node)
        except FileChangedError as exc:
            self._error(path, str(exc))
        except OSError as exc:
            self._error(path, exc.strerror or str(exc))
        return None

    def _save_dir_entry(
        self, path: bytes, name: bytes, st: os.stat_result, same: Doc | None, parent: Doc | None
    ) -> Doc:
        if self._one_fs and self._root_devices and st.st_dev not in self._root_devices:
            subtree = self._save_tree([])  # a mount point: kept, but not entered
        else:
            subtree = self._save_dir(path, _subtree_of(parent))
        if same is not None and same.get("subtree") == subtree:
            self.stats.dirs_unmodified += 1
            return same
        if parent is None or parent.get("type") != "dir":
            self.stats.dirs_new += 1
        else:
            self.stats.dirs_changed += 1
        node = self._node_from_stat(name, path, st)
        node.subtree = subtree
        return node_doc(node)

    def _node_from_stat(self, name: bytes, path: bytes, st: os.stat_result) -> Node:
        return Node(
            name=name,
            type=NODE_TYPE_OF_MODE.get(stat.S_IFMT(st.st_mode), "file"),
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

    def _file_node(self, path: bytes, name: bytes, st: os.stat_result, parent: Doc | None) -> Node:
        node = self._node_from_stat(name, path, st)
        link_key = (st.st_dev, st.st_ino)
        content = None if self._force else self._unchanged_content(parent, st)
        if st.st_nlink > 1 and link_key in self._hardlinks:
            content = self._hardlinks[link_key]
        if content is not None:
            node.size, node.content = st.st_size, content
        else:
            node.size, node.content = self._read_file(path, st)
        if parent is None or parent.get("type") != "file":
            self.stats.files_new += 1
        elif [bytes.fromhex(h) for h in parent.get("content", [])] == node.content:
            self.stats.files_unmodified += 1
        else:
            self.stats.files_changed += 1
        if st.st_nlink > 1:
            self._hardlinks[link_key] = node.content
        self._count_file(node.size)
        return node

    def _unchanged_content(self, parent: Doc | None, st: os.stat_result) -> list[bytes] | None:
        """The parent's blobs when size, mtime, ctime and inode say the file is the same."""
        if (
            parent is None
            or not self._settled(st)
            or parent.get("type") != "file"
            or parent.get("size") != st.st_size
            or parent.get("mtime_ns") != st.st_mtime_ns
            or parent.get("ctime_ns") != st.st_ctime_ns
            or parent.get("inode") != st.st_ino
        ):
            return None
        return self._known_content(parent)

    def _settled(self, st: os.stat_result) -> bool:
        """Whether the parent's record of a file can be trusted at all.

        File-system clocks tick coarsely (ext4 every few ms, FAT 2 s), so a file changed
        just after the parent backup read it can keep its size, mtime and ctime (git's
        "racy clean" case). A file whose ctime is within a window before the parent backup
        began is read again: 2 s where timestamps are whole milliseconds or coarser, and
        0.25 s where they carry nanoseconds, whose clocks tick far faster than that.
        """
        window = FINE_RACY_WINDOW_NS if st.st_ctime_ns % 1_000_000 else RACY_WINDOW_NS
        return not self._force and st.st_ctime_ns < self._parent_started_ns - window

    def _known_content(self, parent: Doc) -> list[bytes] | None:
        content = [bytes.fromhex(h) for h in parent.get("content", [])]
        return content if all(self._saver.known(c) for c in content) else None

    def _count_unmodified(self, st: os.stat_result, content: list[bytes]) -> None:
        if st.st_nlink > 1:
            self._hardlinks[(st.st_dev, st.st_ino)] = content
        self.stats.files_unmodified += 1
        self._count_file(st.st_size)

    def _read_file(self, path: bytes, st: os.stat_result) -> tuple[int, list[bytes]]:
        """Read and save a file, again if it changed meanwhile; give up after a few tries.

        ``st`` is the lstat taken before opening: a file whose inode, size, mtime or
        ctime differ after the read was replaced or written to while it was read.
        """
        if self._live:
            return self._read_as_is(path, st)
        for _ in range(READ_ATTEMPTS):
            fd = _open_for_reading(path)
            try:
                if st.st_size <= self._chunker.max_size:
                    size, content = self._save_small(fd, st.st_size)
                else:
                    with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                        size, content = self._save_content(f)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            if after.st_ino != st.st_ino or not stat.S_ISREG(after.st_mode):
                raise FileReplacedError("file was replaced while the backup ran")
            if _same_version(st, after) and size == after.st_size:
                return size, content
            st = after
        raise FileChangedError(f"file kept changing while it was read ({READ_ATTEMPTS} tries)")

    def _read_as_is(self, path: bytes, st: os.stat_result) -> tuple[int, list[bytes]]:
        """Live mode: whatever the file holds from start to end of file, once.

        A file no larger than one chunk's maximum is read whole and split in memory, as
        in ``_save_small``: a stream reader costs ~7 ms a file to set up, which was most of
        a PostgreSQL base backup (a thousand small files). One that grew past the maximum
        while it was read goes through the stream reader from its start.
        """
        fd = _open_for_reading(path)
        try:
            if st.st_size <= self._chunker.max_size:
                data = _read_to_end(fd, st.st_size, self._chunker.max_size + 1)
                if len(data) <= self._chunker.max_size:
                    content = [
                        self._saver.save(BlobType.DATA, c)[0] for c in self._chunker.split(data)
                    ]
                    return len(data), content
                os.lseek(fd, 0, os.SEEK_SET)
            with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                return self._save_content(f)
        finally:
            os.close(fd)

    def _save_small(self, fd: int, expected: int) -> tuple[int, list[bytes]]:
        """A file no larger than one chunk's maximum: one read, split in memory."""
        data = _read_expected(fd, expected)
        content = [self._saver.save(BlobType.DATA, c)[0] for c in self._chunker.split(data)]
        return len(data), content

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
        if self._live and not os.path.lexists(path):
            self.stats.vanished += 1
            return
        text = os.fsdecode(path)
        self.stats.errors.append((text, message))
        self._progress.error(text, message)


def _open_for_reading(path: bytes) -> int:
    # O_NONBLOCK: a path swapped for a FIFO since the lstat must not hang the backup
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
    try:
        return os.open(path, flags)
    except PermissionError:
        return os.open(path, flags & ~getattr(os, "O_NOATIME", 0))


def _read_expected(fd: int, expected: int) -> bytes:
    """A file of ``expected`` bytes, plus one byte more if it grew (the caller sees that).

    One read suffices on local file systems; FUSE and network ones may return less, so
    a short read is followed until end of file.
    """
    data = os.read(fd, expected + 1)
    if len(data) >= expected or not data:
        return data
    parts = [data]
    got = len(data)
    while got <= expected:
        part = os.read(fd, expected + 1 - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_to_end(fd: int, expected: int, limit: int) -> bytes:
    """A file to its end, but at most ``limit`` bytes; ``expected`` is its size when looked
    at (one read of that much, one more to see the end)."""
    parts, got, want = [], 0, expected + 1
    while got < limit:
        part = os.read(fd, min(want, limit - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
        want = 1 << 20
    return b"".join(parts)


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


def own_node(name: bytes, kind: str, mode: int, **fields: Any) -> Node:
    """A node for an entry that has no file of its own (a stream, its parent dirs)."""
    uid, gid, now_ns = os.getuid(), os.getgid(), time.time_ns()
    return Node(
        name=name,
        type=kind,
        mode=mode,
        uid=uid,
        gid=gid,
        user=user_name(uid),
        group=group_name(gid),
        mtime_ns=now_ns,
        ctime_ns=now_ns,
        **fields,
    )


def _subtree_of(parent: Doc | None) -> str | None:
    if parent is None or parent.get("type") != "dir":
        return None
    subtree = parent.get("subtree")
    return subtree if isinstance(subtree, str) else None


def _same_stat(doc: Doc, st: os.stat_result) -> bool:
    """Whether a stored node still describes the entry exactly (ctime covers xattrs too)."""
    return (
        doc.get("mtime_ns") == st.st_mtime_ns
        and doc.get("ctime_ns") == st.st_ctime_ns
        and doc.get("inode") == st.st_ino
        and doc.get("device") == st.st_dev
        and doc.get("links") == st.st_nlink
        and doc.get("mode") == stat.S_IMODE(st.st_mode)
        and doc.get("uid") == st.st_uid
        and doc.get("gid") == st.st_gid
        and (doc.get("size") == st.st_size or not stat.S_ISREG(st.st_mode))
    )
