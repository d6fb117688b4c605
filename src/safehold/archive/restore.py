"""Restoring a snapshot's tree under a target directory, safely and in parallel.

Safety: every entry is created relative to an open descriptor of its parent directory,
from a single validated name, with O_NOFOLLOW; so neither ``../`` names nor symlinks (in
the snapshot or already in the target) can make restore write outside the target.
Speed: the walk runs in one thread and gathers files into batches; for each batch the
reads are planned pack by pack (restore_packs.py: few large requests, each blob read
once) and run by a pool, which writes every blob where it belongs. A file is created at
its first bytes and finished (size, metadata, closed) at its last. At most a few batches
are in flight, which bounds open files and memory. A directory stays open until its last
file is done; then its metadata is set, so creating entries does not change its mtime.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from safehold.archive.extent import (
    MAX_ENTRIES,
    NOTHING_STORED,
    TreeEntries,
    allowance,
    check_extent,
    measure,
)
from safehold.archive.metadata import gid_for, uid_for
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.restore_packs import PackRead, ReadLimits, TreePacks, plan_reads, read_blobs
from safehold.archive.restore_select import Selection
from safehold.archive.tree import BadEntry, Node, safe_name
from safehold.errors import InvalidArgument, InvalidPath, SafeholdError, SnapshotTooLarge
from safehold.repo.limits import MAX_DEPTH
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.storage.local import LocalStore

__all__ = ["OVERWRITE_MODES", "RestoreOptions", "RestoreStats", "Restorer"]

OVERWRITE_MODES = ("always", "if-changed", "never")
# Files planned together share their reads, pack by pack; a pack that two batches need is
# read by each. 128-2048 files per batch restored the S3 benchmark equally fast; the
# smaller batch holds fewer files open (at most BATCHES_IN_FLIGHT batches of them).
BATCH_FILES = 512
BATCH_BYTES = 128 << 20
BATCHES_IN_FLIGHT = 2  # the walk plans the next batch while the pool reads this one
TREE_PACKS_HELD = 4  # tree packs kept in memory, in packs of the configured size
SPARSE_BLOCK = 4096  # the usual file-system block: a smaller hole is no hole
ZEROS = bytes(SPARSE_BLOCK)
ZERO_PROBE = bytes(2 * SPARSE_BLOCK)  # a chunk without such a run has no aligned hole
BAD_ENTRIES_NAMED = 10  # per directory; a tree of two million bad entries costs one more line


@dataclass
class RestoreOptions:
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)  # patterns (restore_select.py)
    iincludes: list[str] = field(default_factory=list)  # case-blind forms of both
    iexcludes: list[str] = field(default_factory=list)
    overwrite: str = "always"
    verify: bool = False
    numeric_owner: bool = False
    workers: int = 0
    # for snapshots from other hosts: no device nodes, no setuid/setgid bits, no
    # security.* or trusted.* xattrs (as root, restore otherwise recreates them, as tar does)
    no_special: bool = False


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
    counted: bool = False  # its entries are in the walk's budget already (--include)


@dataclass(eq=False)
class _File:
    """A regular file to restore: created at its first bytes, finished at its last.

    ``remaining`` counts the blob placements not yet written (or failed); whichever pool
    thread places the last one finishes the file. A file nothing could be read for is
    never created, so a failed restore leaves no empty stub.
    """

    node: Node
    parent: _OpenDir
    name: bytes
    path: bytes
    fd: int | None = None
    size: int = 0  # of the content as stored, whatever ``node.size`` says
    remaining: int = 0
    written: int = 0
    presized: bool = False
    sparse: bool = False
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Batch:
    files: list[_File] = field(default_factory=list)
    size: int = 0
    jobs: list[Future[None]] = field(default_factory=list)


class Restorer:
    def __init__(
        self, repo: Repository, options: RestoreOptions, progress: Progress | None = None
    ) -> None:
        if options.overwrite not in OVERWRITE_MODES:
            raise InvalidArgument(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}")
        self._repo = repo
        self._opts = options
        self._progress = progress or NullProgress()
        self._select = Selection(
            options.includes,
            options.excludes,
            iincludes=options.iincludes,
            iexcludes=options.iexcludes,
        )
        self._is_root = os.geteuid() == 0
        self._own_ids = (os.geteuid(), os.getegid())
        self._umask = _current_umask()
        self._links: dict[tuple[int, int], tuple[bytes, list[bytes]]] = {}
        self._lock = threading.Lock()
        # CPU-bound work wants one thread per core; a remote store wants a request in
        # flight per connection it allows (--connections), since each read waits on it.
        connections = int(getattr(repo.store, "connections", 0) or 0)
        self._pool = ThreadPoolExecutor(options.workers or max(2, os.cpu_count() or 2, connections))
        self._limits = ReadLimits.for_repository(repo)
        self._batch = _Batch()
        self._in_flight: deque[_Batch] = deque()
        self._open_dirs: dict[int, _OpenDir] = {}  # by fd: closed at the end, however it ends
        self._trees = TreeEntries(self._tree_loader())
        self.stats = RestoreStats()

    def restore(self, tree_id: str, target: str, snapshot: Snapshot | None = None) -> RestoreStats:
        """Restore a tree under ``target``; ``snapshot`` (its summary) bounds how far the
        tree may expand, else only what is stored does (``extent.allowance``).

        With --include only a few trees are read, so instead of measuring them all first
        the walk counts its entries against what the snapshot declares."""
        self._budget = self._declared = allowance(snapshot, NOTHING_STORED)
        self._measured: dict[str, tuple[int, int]] = {}
        self._snapshot_name = snapshot.short_id if snapshot else f"tree {tree_id}"
        try:
            if not self._select.narrows:
                extent = measure(self._nodes, tree_id)
                check_extent(snapshot, extent, tree_id)
                self._budget = MAX_ENTRIES
        except BaseException:
            self._pool.shutdown()
            raise
        _allow_open_files(MAX_DEPTH + BATCHES_IN_FLIGHT * BATCH_FILES + 64)
        os.makedirs(target, exist_ok=True)
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        self._root_fd = root_fd
        stack: list[_OpenDir] = []
        try:
            stack.append(_OpenDir(None, root_fd, b"", b"", self._entries(tree_id, b"")))
            self._walk(stack)
            self._submit_batch()
            while self._in_flight:
                self._wait_oldest()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for opened in self._open_dirs.values():  # only when the restore was aborted
                os.close(opened.fd)
            self._close_unfinished()
            os.close(root_fd)
        return self.stats

    def _tree_loader(self) -> Callable[[str], str]:
        """Whole tree packs from a remote store, unless --include picks a few paths (then
        the few trees on their way are cheaper read one by one)."""
        if isinstance(self._repo.store, LocalStore) or self._select.narrows:
            return self._repo.load_tree_text
        return TreePacks(self._repo, TREE_PACKS_HELD * self._repo.config.pack_size).load

    def _close_unfinished(self) -> None:
        """After an interrupted restore, close the files it was still writing."""
        for batch in (*self._in_flight, self._batch):
            for f in batch.files:
                if f.fd is not None:
                    os.close(f.fd)

    # ---- selection --------------------------------------------------------------------

    def _selection(self, path: bytes) -> str:
        return self._select.of(path)

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
            selection = self._selection(path)
            if selection == "skip" or (selection == "descend" and node.type != "dir"):
                continue
            if self._select.narrows and not here.counted:
                self._spend(node, selection)
            try:
                name = safe_name(node.name)
            except InvalidPath as exc:
                self._error(path, str(exc))
                continue
            if node.type == "dir" and len(stack) > MAX_DEPTH:
                self._error(path, f"not restored: deeper than {MAX_DEPTH} directory levels")
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

    def _spend(self, node: Node, selection: str) -> None:
        """Count an entry of a narrowed walk against what the snapshot declares; an
        included directory counts with everything below it, measured before it is made."""
        spent = 1
        if node.type == "dir" and node.subtree and selection == "all":
            spent += measure(self._nodes, node.subtree, self._measured).entries
        self._budget -= spent
        if self._budget < 0:
            who, declared = self._snapshot_name, self._declared
            raise SnapshotTooLarge(who, f"over {declared}", declared)

    def _entries(self, tree_id: str, path: bytes) -> Iterator[Node]:
        """A tree's usable entries, read one at a time; the bad ones (malformed, a repeated
        name) are reported, the first few by name and the rest in one line."""
        return self._reporting(self._trees.take(tree_id), path)

    def _reporting(self, entries: Iterator[Node | BadEntry], path: bytes) -> Iterator[Node]:
        more = 0
        for entry in entries:
            if isinstance(entry, Node):
                yield entry
            elif self._selection(path + b"/" + entry.name) == "skip":
                continue
            elif more < BAD_ENTRIES_NAMED:  # the first of a repeated name is restored
                self._error(path + b"/" + entry.name, f"not restored: {entry.reason}")
                more += 1
            else:
                more += 1
        if more > BAD_ENTRIES_NAMED:
            self._error(path or b"/", f"{more - BAD_ENTRIES_NAMED} more bad entries not restored")

    def _nodes(self, tree_id: str) -> Iterator[Node]:
        """The usable nodes of a tree, for measuring it."""
        for entry in self._trees.keep(tree_id):
            if isinstance(entry, Node):
                yield entry

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
        elif node.type in ("chardev", "blockdev") and self._opts.no_special:
            self.stats.files_skipped += 1
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
        opened = _OpenDir(node, fd, rel, path, entries, fresh)
        opened.counted = parent.counted or self._selection(path) == "all"
        self._open_dirs[fd] = opened
        return opened

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
            with self._lock:
                self.stats.dirs_restored += 1
        except (SafeholdError, ValueError) as exc:
            self._error(opened.path, str(exc))
        except OSError as exc:
            self._error(opened.path, exc.strerror or str(exc))
        finally:
            with self._lock:
                del self._open_dirs[opened.fd]
            os.close(opened.fd)

    def _restore_file(
        self, node: Node, parent: _OpenDir, name: bytes, rel: bytes, path: bytes
    ) -> None:
        link_key = (node.device, node.inode)
        linked = self._links.get(link_key) if node.links > 1 else None
        if linked is not None and linked[1] == node.content:
            os.link(
                linked[0],
                name,
                src_dir_fd=self._root_fd,
                dst_dir_fd=parent.fd,
                follow_symlinks=False,  # never link to where a symlink points
            )
            with self._lock:  # pool threads count too
                self.stats.files_restored += 1
            return
        if linked is not None:  # one inode, two contents: the snapshot contradicts itself
            self._error(path, "same inode as another file but other content: not linked")
        fd = None
        if node.links > 1 and linked is None:  # created now, for its other names to link to
            fd = self._create(parent, name, node)
            self._links[link_key] = (rel, node.content)
        with self._lock:
            parent.pending += 1
        batch = self._batch
        batch.files.append(_File(node, parent, name, path, fd))
        batch.size += node.size
        if len(batch.files) >= BATCH_FILES or batch.size >= BATCH_BYTES:
            self._submit_batch()

    def _submit_batch(self) -> None:
        """Plan the batch's reads and hand them to the pool; first wait, if need be, for
        an older batch, so that open files and bytes in flight stay bounded."""
        batch, self._batch = self._batch, _Batch()
        if not batch.files:
            return
        while len(self._in_flight) >= BATCHES_IN_FLIGHT:
            self._wait_oldest()
        self._in_flight.append(batch)
        files = batch.files
        reads, unusable = plan_reads(
            [f.node.content for f in files], self._repo.locate, self._limits
        )
        for number, exc in unusable.items():
            self._fail(files[number], str(exc))
        for number, f in enumerate(files):
            if number not in unusable:
                f.size = sum(self._repo.locate(blob_id).raw_length for blob_id in f.node.content)
                if f.size != f.node.size:
                    self._error(
                        f.path,
                        f"size {f.node.size} disagrees with its content ({f.size} bytes):"
                        " restored as stored",
                    )
        for read in reads:
            for blob in read.blobs:
                for number, _ in blob.uses:
                    files[number].remaining += 1
        done = [f for f in files if not f.remaining]  # empty, or unusable
        if done:
            batch.jobs.append(self._pool.submit(self._finish_files, done))
        batch.jobs += [self._pool.submit(self._read_job, read, files) for read in reads]

    def _wait_oldest(self) -> None:
        """Wait for the oldest batch; it stays listed until done, to be closed if not."""
        for job in self._in_flight[0].jobs:
            job.result()
        self._in_flight.popleft()

    def _create(self, parent: _OpenDir, name: bytes, node: Node) -> int:
        """Create with the file's own permission bits (the fd stays writable whatever they
        are), so that most files need no chmod later."""
        flags = os.O_RDWR if self._opts.verify else os.O_WRONLY
        flags |= os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(name, flags, self._mode(node) & 0o777, dir_fd=parent.fd)

    # ---- file contents (pool threads) -------------------------------------------------

    def _finish_files(self, files: list[_File]) -> None:
        for f in files:
            self._finish_file(f)

    def _read_job(self, read: PackRead, files: list[_File]) -> None:
        """One read of a pack; each blob goes to every place that needs it."""
        for blob, data in read_blobs(self._repo, read):
            for number, offset in blob.uses:
                f = files[number]
                written = 0
                if isinstance(data, SafeholdError):
                    self._fail(f, str(data))
                else:
                    written = self._place(f, data, offset)
                with f.lock:
                    f.written += written
                    f.remaining -= 1
                    last = f.remaining == 0
                if last:
                    self._finish_file(f)

    def _place(self, f: _File, data: bytes, offset: int) -> int:
        """Write one blob into its file, creating the file at its first bytes; the bytes
        written (none once the file has failed)."""
        try:
            fd = self._opened(f)
            if fd is None:
                return 0
            self._write_data(f, fd, data, offset)
        except OSError as exc:
            self._fail(f, exc.strerror or str(exc))
            return 0
        return len(data)

    def _opened(self, f: _File) -> int | None:
        """The file's descriptor, the file created if need be; None once it has failed.

        A file of several blobs is sized first: its blobs arrive in any order."""
        with f.lock:
            if f.failed:
                return None
            if f.fd is None:
                f.fd = self._create(f.parent, f.name, f.node)
                if len(f.node.content) > 1 and f.size:
                    os.ftruncate(f.fd, f.size)
                    f.presized = True
            return f.fd

    def _fail(self, f: _File, message: str) -> None:
        """Report a file once, whatever number of its blobs fail."""
        with f.lock:
            first = not f.failed
            f.failed = True
        if first:
            self._error(f.path, message)

    def _finish_file(self, f: _File) -> None:
        """Size, verify, metadata, close; a file without content is created only now."""
        node = f.node
        try:
            fd = self._opened(f)
            if fd is not None:
                if (f.sparse and not f.presized) or f.written != f.size:
                    os.ftruncate(fd, f.size)  # also makes a trailing hole
                if self._opts.verify:
                    self._verify(fd, node.content, 0)
                    if os.fstat(fd).st_size != f.size:
                        raise InvalidArgument("verification failed: restored size differs")
                self._set_fd_metadata(node, fd, created=f.parent.fresh)
        except SafeholdError as exc:
            self._fail(f, str(exc))
        except OSError as exc:
            self._fail(f, exc.strerror or str(exc))
        finally:
            if f.fd is not None:
                os.close(f.fd)
                f.fd = None
            self._release(f.parent)
        if f.failed:
            return
        with self._lock:
            self.stats.files_restored += 1
            self.stats.bytes_written += f.written
            if self._opts.verify:
                self.stats.files_verified += 1
        self._progress.advance(1, node.size)

    def _write_data(self, f: _File, fd: int, data: bytes, offset: int) -> None:
        """Zero blocks are skipped, so sparse files stay sparse."""
        if data.find(ZERO_PROBE) == -1:
            _write_all(fd, memoryview(data), offset)
        else:
            f.sparse = True
            _write_sparse(fd, data, offset)

    def _verify(self, fd: int, blobs: list[bytes], offset: int) -> None:
        for blob_id in blobs:
            length = self._repo.locate(blob_id).raw_length
            data = os.pread(fd, length, offset)
            if self._repo.key.blob_id(data) != blob_id:
                raise InvalidArgument(f"verification failed at offset {offset}: content differs")
            offset += length

    # ---- metadata ---------------------------------------------------------------------

    def _mode(self, node: Node) -> int:
        return node.mode & ~0o6000 if self._opts.no_special else node.mode

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
        mode = self._mode(node)
        if chown or not created or mode & 0o777 & ~self._umask != mode:
            os.fchmod(fd, mode)  # after chown, which clears setuid and setgid
        for key, value in node.xattrs.items():
            if self._opts.no_special and key.startswith(("security.", "trusted.")):
                continue
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
            os.chmod(name, self._mode(node), dir_fd=dir_fd)
        os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        with self._lock:
            self.stats.errors.append((text, message))
        self._progress.error(text, message)


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


def _allow_open_files(needed: int) -> None:
    """A directory stays open per level, files per batch: raise the soft limit (1024 on
    many systems) towards the hard one so that a deep tree does not run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _current_umask() -> int:
    """The process umask (read by setting it, so call before the pool's threads run)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
