"""Restoring a snapshot's tree under a target directory, safely and in parallel.

Safety: every entry is created relative to an open descriptor of its parent directory,
from a single validated name, with O_NOFOLLOW; so neither ``../`` names nor symlinks (in
the snapshot or already in the target) can make restore write outside the target.
Speed: the walk runs in one thread; files are created, fetched, decrypted and written by
a pool, a bounded number of files at a time, and a large file in segments by several
threads at once. A directory stays open until its last file is done; then its metadata
is set, so creating entries does not change its restored mtime.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from safehold.archive.metadata import gid_for, uid_for
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.tree import Node, decode_entries, safe_name
from safehold.errors import InvalidArgument, InvalidPath, SafeholdError
from safehold.repo.repository import Repository

__all__ = ["OVERWRITE_MODES", "RestoreOptions", "RestoreStats", "Restorer"]

OVERWRITE_MODES = ("always", "if-changed", "never")
MAX_OPEN_FILES = 64
SMALL_BATCH_FILES = 32  # small files go to the pool in batches, their blobs read together
SMALL_BATCH_BYTES = 4 << 20
SEGMENT_BLOBS = 4  # a large file is written by several threads, this many blobs each
SPARSE_BLOCK = 4096  # the usual file-system block: a smaller hole is no hole
ZEROS = bytes(SPARSE_BLOCK)
ZERO_PROBE = bytes(2 * SPARSE_BLOCK)  # a chunk without such a run has no aligned hole


@dataclass
class RestoreOptions:
    includes: list[str] = field(default_factory=list)
    overwrite: str = "always"
    verify: bool = False
    numeric_owner: bool = False
    workers: int = 0


@dataclass
class RestoreStats:
    files_restored: int = 0
    files_skipped: int = 0
    dirs_restored: int = 0
    other_restored: int = 0
    bytes_written: int = 0
    files_verified: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _OpenDir:
    """A directory of the walk: restored (or the target itself, ``node`` None), open.

    ``pending`` counts the walk (until it leaves the directory) and each file job in it;
    the last to finish sets the directory's metadata and closes it. ``fresh`` means the
    restore made it, so nothing can be in the way of its entries.
    """

    node: Node | None
    fd: int
    rel: bytes
    path: bytes
    entries: Iterator[Node]
    fresh: bool = False
    pending: int = 1


@dataclass
class _SmallFile:
    """A file of at most one blob, waiting for its batch."""

    node: Node
    parent: _OpenDir
    name: bytes
    path: bytes


@dataclass
class _OpenFile:
    """A file being written by one or more segment jobs; the last one finishes it."""

    node: Node
    fd: int
    path: bytes
    parent: _OpenDir
    segments: int
    written: int = 0
    sparse: bool = False
    failed: bool = False


class Restorer:
    def __init__(
        self, repo: Repository, options: RestoreOptions, progress: Progress | None = None
    ) -> None:
        if options.overwrite not in OVERWRITE_MODES:
            raise InvalidArgument(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}")
        self._repo = repo
        self._opts = options
        self._progress = progress or NullProgress()
        self._includes = [_include_path(p) for p in options.includes]
        self._is_root = os.geteuid() == 0
        self._own_ids = (os.geteuid(), os.getegid())
        self._umask = _current_umask()
        self._links: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()
        # CPU-bound work wants one thread per core; a remote store wants a request in
        # flight per connection it allows (--connections), since each read waits on it.
        connections = int(getattr(repo.store, "connections", 0) or 0)
        self._pool = ThreadPoolExecutor(options.workers or max(2, os.cpu_count() or 2, connections))
        self._jobs: deque[Future[None]] = deque()
        self._segments: list[Future[None]] = []
        self._small: list[_SmallFile] = []
        self._small_bytes = 0
        self.stats = RestoreStats()

    def restore(self, tree_id: str, target: str) -> RestoreStats:
        os.makedirs(target, exist_ok=True)
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        self._root_fd = root_fd
        stack: list[_OpenDir] = []
        try:
            stack.append(_OpenDir(None, root_fd, b"", b"", self._entries(tree_id, b"")))
            self._walk(stack)
            self._submit_small()
            while self._jobs:
                self._jobs.popleft().result()
            while self._segments:
                with self._lock:
                    segments, self._segments = self._segments, []
                for segment in segments:
                    segment.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for opened in stack[1:]:  # only when the walk was aborted
                os.close(opened.fd)
            os.close(root_fd)
        return self.stats

    # ---- selection --------------------------------------------------------------------

    def _selection(self, path: bytes) -> str:
        """ "all" below an include, "descend" above one, "skip" elsewhere."""
        if not self._includes or b"/" in self._includes:
            return "all"
        for inc in self._includes:
            if path == inc or path.startswith(inc + b"/"):
                return "all"
        if any(inc.startswith(path + b"/") for inc in self._includes):
            return "descend"
        return "skip"

    # ---- the walk ---------------------------------------------------------------------

    def _walk(self, stack: list[_OpenDir]) -> None:
        """Depth first, without recursion (a tree may be deeper than Python's stack).

        ``stack`` holds one open directory per level; a directory's own metadata is set
        when its last entry is done, so creating the entries does not change its mtime.
        """
        while stack:
            here = stack[-1]
            node = next(here.entries, None)
            if node is None:
                stack.pop()
                if here.node is not None:
                    self._release(here)
                continue
            path = here.path + b"/" + node.name
            try:
                name = safe_name(node.name)
            except InvalidPath as exc:
                self._error(path, str(exc))
                continue
            selection = self._selection(path)
            if selection == "skip" or (selection == "descend" and node.type != "dir"):
                continue
            rel = here.rel + b"/" + name if here.rel else name
            try:
                if node.type == "dir":
                    stack.append(self._enter_dir(node, here, name, rel, path))
                else:
                    self._restore_node(node, here, name, rel, path)
            except (SafeholdError, ValueError) as exc:  # ValueError: a NUL in a symlink target
                self._error(path, str(exc))
            except OSError as exc:
                self._error(path, exc.strerror or str(exc))

    def _entries(self, tree_id: str, path: bytes) -> Iterator[Node]:
        """A tree's usable entries; the bad ones (malformed, a repeated name) are reported."""
        nodes, bad = decode_entries(self._repo.load_tree_document(tree_id), f"tree {tree_id}")
        for entry in bad:  # the first of a repeated name is restored, later ones never
            if self._selection(path + b"/" + entry.name) != "skip":
                self._error(path + b"/" + entry.name, f"not restored: {entry.reason}")
        return iter(nodes)

    def _restore_node(
        self, node: Node, parent: _OpenDir, name: bytes, rel: bytes, path: bytes
    ) -> None:
        """Restore an entry other than a directory."""
        dir_fd = parent.fd
        if not parent.fresh and not self._clear_place(node, dir_fd, name):
            self.stats.files_skipped += 1
            return
        if node.type == "file":
            self._restore_file(node, parent, name, rel, path)
        elif node.type == "symlink":
            os.symlink(node.target, name, dir_fd=dir_fd)
            self._set_path_metadata(node, dir_fd, name, is_link=True)
            self.stats.other_restored += 1
        elif node.type == "fifo":
            os.mkfifo(name, 0o600, dir_fd=dir_fd)
            self._set_path_metadata(node, dir_fd, name, is_link=False)
            self.stats.other_restored += 1
        elif node.type in ("chardev", "blockdev"):
            kind = stat.S_IFCHR if node.type == "chardev" else stat.S_IFBLK
            os.mknod(name, kind | 0o600, node.rdev, dir_fd=dir_fd)
            self._set_path_metadata(node, dir_fd, name, is_link=False)
            self.stats.other_restored += 1
        # sockets belong to a running process; like tar and restic, nothing to restore

    def _existing(self, dir_fd: int, name: bytes) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _clear_place(self, node: Node, dir_fd: int, name: bytes) -> bool:
        """Make room for a non-directory entry; False when the overwrite policy keeps the old."""
        old = self._existing(dir_fd, name)
        if old is None:
            return True
        if self._opts.overwrite == "never":
            return False
        if (
            self._opts.overwrite == "if-changed"
            and node.type == "file"
            and stat.S_ISREG(old.st_mode)
            and old.st_size == node.size
            and old.st_mtime_ns == node.mtime_ns
        ):
            return False
        if stat.S_ISDIR(old.st_mode):
            raise InvalidArgument("a directory is in the way; not replacing it with a file")
        os.unlink(name, dir_fd=dir_fd)
        return True

    def _enter_dir(
        self, node: Node, parent: _OpenDir, name: bytes, rel: bytes, path: bytes
    ) -> _OpenDir:
        """Create (or reuse) a directory and open it, with its entries still to restore."""
        dir_fd = parent.fd
        old = None if parent.fresh else self._existing(dir_fd, name)
        if old is not None and not stat.S_ISDIR(old.st_mode):
            if self._opts.overwrite == "never":
                raise InvalidArgument("a non-directory is in the way")
            os.unlink(name, dir_fd=dir_fd)
            old = None
        fresh = old is None
        if fresh:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            entries = self._entries(node.subtree, path) if node.subtree else iter(())
        except BaseException:
            os.close(fd)
            raise
        return _OpenDir(node, fd, rel, path, entries, fresh)

    def _release(self, opened: _OpenDir) -> None:
        """One user of a directory is done; the last one finishes it."""
        with self._lock:
            opened.pending -= 1
            last = opened.pending == 0
        if last and opened.node is not None:
            self._finish_dir(opened)

    def _finish_dir(self, opened: _OpenDir) -> None:
        assert opened.node is not None
        try:
            if self._selection(opened.path) == "all":
                self._set_fd_metadata(opened.node, opened.fd)
            self.stats.dirs_restored += 1
        except (SafeholdError, ValueError) as exc:
            self._error(opened.path, str(exc))
        except OSError as exc:
            self._error(opened.path, exc.strerror or str(exc))
        finally:
            os.close(opened.fd)

    def _restore_file(
        self, node: Node, parent: _OpenDir, name: bytes, rel: bytes, path: bytes
    ) -> None:
        link_key = (node.device, node.inode)
        if node.links > 1 and link_key in self._links:
            os.link(
                self._links[link_key],
                name,
                src_dir_fd=self._root_fd,
                dst_dir_fd=parent.fd,
                follow_symlinks=False,  # never link to where a symlink points
            )
            self.stats.files_restored += 1
            return
        fd = None
        if node.links > 1:  # created now, so that its other names can link to it
            fd = self._create(parent, name, node)
            self._links[link_key] = rel
        with self._lock:
            parent.pending += 1
        if fd is None and len(node.content) <= 1:
            self._small.append(_SmallFile(node, parent, name, path))
            self._small_bytes += node.size
            if len(self._small) >= SMALL_BATCH_FILES or self._small_bytes >= SMALL_BATCH_BYTES:
                self._submit_small()
            return
        self._submit(self._start_file, node, parent, name, path, fd)

    def _submit(self, job: Callable[..., None], *args: object) -> None:
        while len(self._jobs) >= MAX_OPEN_FILES:
            self._jobs.popleft().result()
        self._jobs.append(self._pool.submit(job, *args))

    def _submit_small(self) -> None:
        batch, self._small, self._small_bytes = self._small, [], 0
        if batch:
            self._submit(self._restore_small, batch)

    def _create(self, parent: _OpenDir, name: bytes, node: Node) -> int:
        """Create with the file's own permission bits (the fd stays writable whatever they
        are), so that most files need no chmod later."""
        flags = os.O_RDWR if self._opts.verify else os.O_WRONLY
        flags |= os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(name, flags, node.mode & 0o777, dir_fd=parent.fd)

    # ---- file contents (pool threads) -------------------------------------------------

    def _restore_small(self, batch: list[_SmallFile]) -> None:
        """Files of at most one blob, read together (neighbours in a pack in one read)."""
        blobs = self._repo.load_blobs([f.node.content[0] for f in batch if f.node.content])
        for f in batch:
            data = blobs[f.node.content[0]] if f.node.content else b""
            if isinstance(data, SafeholdError):
                self._error(f.path, str(data))  # nothing created: no empty stub is left
                self._release(f.parent)
                continue
            try:
                fd = self._create(f.parent, f.name, f.node)
            except OSError as exc:
                self._error(f.path, exc.strerror or str(exc))
                self._release(f.parent)
                continue
            opened = _OpenFile(f.node, fd, f.path, f.parent, segments=0, written=len(data))
            try:
                self._write_data(opened, data, 0)
                if self._opts.verify and f.node.content:
                    self._verify(fd, f.node.content, 0)
            except SafeholdError as exc:
                self._fail(opened, str(exc))
            except OSError as exc:
                self._fail(opened, exc.strerror or str(exc))
            self._finish_file(opened)

    def _start_file(
        self, node: Node, parent: _OpenDir, name: bytes, path: bytes, fd: int | None
    ) -> None:
        """Create the file and write its first segment; hand the others to the pool."""
        try:
            fd = self._create(parent, name, node) if fd is None else fd
        except OSError as exc:
            self._error(path, exc.strerror or str(exc))
            self._release(parent)
            return
        starts = list(range(0, len(node.content), SEGMENT_BLOBS)) or [0]
        opened = _OpenFile(node, fd, path, parent, len(starts))
        offsets = self._segment_offsets(node, starts)
        for start, offset in zip(starts[1:], offsets[1:], strict=True):
            segment = self._pool.submit(self._write_segment, opened, start, offset)
            with self._lock:
                self._segments.append(segment)
        self._write_segment(opened, 0, 0)

    def _segment_offsets(self, node: Node, starts: list[int]) -> list[int]:
        """The file offset where each segment begins, from the blobs' raw lengths."""
        if len(starts) == 1:
            return [0]
        offsets, offset, next_start = [], 0, 0
        for i, blob_id in enumerate(node.content):
            if i == starts[next_start]:
                offsets.append(offset)
                next_start += 1
                if next_start == len(starts):
                    break
            offset += self._repo.locate(blob_id).raw_length
        return offsets

    def _write_segment(self, opened: _OpenFile, start: int, offset: int) -> None:
        blobs = opened.node.content[start : start + SEGMENT_BLOBS]
        written = 0
        try:
            written = self._write_blobs(opened, blobs, offset)
            if self._opts.verify:
                self._verify(opened.fd, blobs, offset)
        except SafeholdError as exc:
            self._fail(opened, str(exc))
        except OSError as exc:
            self._fail(opened, exc.strerror or str(exc))
        with self._lock:
            opened.written += written
            opened.segments -= 1
            last = opened.segments == 0
        if last:
            self._finish_file(opened)

    def _fail(self, opened: _OpenFile, message: str) -> None:
        with self._lock:
            first = not opened.failed
            opened.failed = True
        if first:
            self._error(opened.path, message)

    def _finish_file(self, opened: _OpenFile) -> None:
        node = opened.node
        try:
            if not opened.failed:
                if opened.sparse or opened.written != node.size:
                    os.ftruncate(opened.fd, node.size)  # also makes a trailing hole
                if self._opts.verify and os.fstat(opened.fd).st_size != node.size:
                    raise InvalidArgument("verification failed: restored size differs")
                self._set_fd_metadata(node, opened.fd, created=opened.parent.fresh)
        except SafeholdError as exc:
            self._fail(opened, str(exc))
        except OSError as exc:
            self._fail(opened, exc.strerror or str(exc))
        finally:
            os.close(opened.fd)
            self._release(opened.parent)
        if opened.failed:
            return
        with self._lock:
            self.stats.files_restored += 1
            self.stats.bytes_written += opened.written
            if self._opts.verify:
                self.stats.files_verified += 1
        self._progress.advance(1, node.size)

    def _write_blobs(self, opened: _OpenFile, blobs: list[bytes], offset: int) -> int:
        """Write blobs from ``offset``; zero runs become holes, so sparse files stay sparse."""
        start = offset
        for blob_id in blobs:
            data = self._repo.load_blob(blob_id)
            self._write_data(opened, data, offset)
            offset += len(data)
        return offset - start

    def _write_data(self, opened: _OpenFile, data: bytes, offset: int) -> None:
        if data.find(ZERO_PROBE) == -1:
            _write_all(opened.fd, memoryview(data), offset)
        else:
            opened.sparse = True
            _write_sparse(opened.fd, data, offset)

    def _verify(self, fd: int, blobs: list[bytes], offset: int) -> None:
        for blob_id in blobs:
            length = self._repo.locate(blob_id).raw_length
            data = os.pread(fd, length, offset)
            if self._repo.key.blob_id(data) != blob_id:
                raise InvalidArgument(f"verification failed at offset {offset}: content differs")
            offset += length

    # ---- metadata ---------------------------------------------------------------------

    def _owner(self, node: Node) -> tuple[int, int]:
        """By name where this system knows the name (as tar and borg do), else numeric."""
        if self._opts.numeric_owner:
            return node.uid, node.gid
        return uid_for(node.user, node.uid), gid_for(node.group, node.gid)

    def _set_fd_metadata(self, node: Node, fd: int, *, created: bool = False) -> None:
        """Owner, mode, xattrs, times. ``created``: a new file in a directory this restore
        made, so it is ours and has ``node.mode & ~umask``; unneeded calls are skipped."""
        owner = self._owner(node)
        chown = self._is_root and not (created and owner == self._own_ids)
        if chown:
            os.fchown(fd, *owner)
        if chown or not created or node.mode & 0o777 & ~self._umask != node.mode:
            os.fchmod(fd, node.mode)  # after chown, which clears setuid and setgid
        for key, value in node.xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))

    def _set_path_metadata(self, node: Node, dir_fd: int, name: bytes, *, is_link: bool) -> None:
        if self._is_root:
            uid, gid = self._owner(node)
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if not is_link:
            os.chmod(name, node.mode, dir_fd=dir_fd)
        os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        with self._lock:
            self.stats.errors.append((text, message))
        self._progress.error(text, message)


def _include_path(path: str) -> bytes:
    """An include as the snapshot spells paths: absolute, normalised, no trailing "/"."""
    if not path.startswith("/"):
        raise InvalidArgument(f"include {path!r} must be an absolute path, as in the snapshot")
    return b"/" + os.path.normpath(os.fsencode(path)).lstrip(b"/")


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _write_sparse(fd: int, data: bytes, offset: int) -> None:
    """Write the non-zero blocks of ``data``; skipping the rest leaves holes.

    Blocks are aligned to file offsets (not to the chunk's start), so every skipped block
    is a whole file-system block and stays unallocated.
    """
    view = memoryview(data)
    run_start = None
    i, end = 0, len(data)
    while i < end:
        j = min(end, i + SPARSE_BLOCK - (offset + i) % SPARSE_BLOCK)
        if data[i:j] == ZEROS[: j - i]:
            if run_start is not None:
                _write_all(fd, view[run_start:i], offset + run_start)
                run_start = None
        elif run_start is None:
            run_start = i
        i = j
    if run_start is not None:
        _write_all(fd, view[run_start:], offset + run_start)


def _current_umask() -> int:
    """The process umask (read by setting it, so call before the pool's threads run)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
