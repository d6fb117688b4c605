"""``mount``: every snapshot as a read-only file system, through FUSE (restic's ``mount``).

Layout, as restic's::

    snapshots/<time>/...   one directory per snapshot (its absolute paths below), and
    snapshots/latest       a symlink to the newest
    hosts/<host>/<time>/...  and hosts/<host>/latest
    tags/<tag>/<time>/...    and tags/<tag>/latest
    ids/<short id>/...

``<time>`` is the snapshot time in RFC 3339 to the second (``-1``, ``-2``... when two
snapshots share a second). Files keep their mode, owner, size and mtime; symlinks their
targets. Reads decrypt each blob once: a small cache holds the blobs last read, since the
kernel asks for 128 KiB at a time and a blob is about 1 MiB. The snapshot list is read at
mount time. Everything runs in the FUSE thread (``nothreads``): the index, the tree cache
and the blob cache need no locks.
"""

from __future__ import annotations

import bisect
import ctypes.util
import errno
import functools
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from safehold.archive.tree import Node, decode_tree
from safehold.errors import InvalidArgument, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["SnapshotFS", "load_fuse", "serve"]

BLOB_CACHE_BYTES = 64 << 20
TREES_CACHED = 4096
_DIR_MODE = stat.S_IFDIR | 0o555
_TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "chardev": stat.S_IFCHR,
    "blockdev": stat.S_IFBLK,
    "socket": stat.S_IFSOCK,
}


def load_fuse() -> Any:
    """mfusepy, bound to libfuse 3 where it is installed (mfusepy would take libfuse 2
    first when both are); ``InvalidArgument`` with what to install when there is none."""
    if "FUSE_LIBRARY_PATH" not in os.environ and ctypes.util.find_library("fuse3"):
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except OSError as exc:  # raised at import when no libfuse is found
        raise InvalidArgument(f"FUSE is not available ({exc}): install fuse3") from None
    return mfusepy


@dataclass
class _Dir:
    """A directory of the layout: names of what is in it, each a _Dir, _Link or _Root."""

    entries: dict[str, _Dir | _Link | _Root] = field(default_factory=dict)
    mtime_ns: int = 0


@dataclass(frozen=True)
class _Link:
    target: str
    mtime_ns: int


@dataclass(frozen=True)
class _Root:
    """A snapshot's root directory."""

    snapshot: Snapshot


def _snapshot_dirs(snapshots: list[Snapshot]) -> _Dir:
    """A directory of snapshots named by time (oldest first), with ``latest``."""
    folder = _Dir()
    for snapshot in snapshots:
        name = snapshot.datetime.isoformat(timespec="seconds")
        unique, n = name, 0
        while unique in folder.entries:
            n += 1
            unique = f"{name}-{n}"
        folder.entries[unique] = _Root(snapshot)
    if snapshots:
        newest = max(snapshots, key=lambda s: (s.datetime, s.id))
        name = next(k for k, v in folder.entries.items() if v == _Root(newest))
        folder.mtime_ns = _ns(newest)
        folder.entries["latest"] = _Link(name, folder.mtime_ns)
    return folder


def _ns(snapshot: Snapshot) -> int:
    return int(snapshot.datetime.timestamp() * 1e9)


def build_layout(snapshots: list[Snapshot]) -> _Dir:
    hosts: dict[str, list[Snapshot]] = {}
    tags: dict[str, list[Snapshot]] = {}
    for snapshot in snapshots:
        hosts.setdefault(snapshot.hostname, []).append(snapshot)
        for tag in snapshot.tags:
            tags.setdefault(tag, []).append(snapshot)
    mtime = max((_ns(s) for s in snapshots), default=time.time_ns())
    return _Dir(
        {
            "snapshots": _snapshot_dirs(snapshots),
            "hosts": _Dir({h: _snapshot_dirs(s) for h, s in sorted(hosts.items())}, mtime),
            "tags": _Dir({t: _snapshot_dirs(s) for t, s in sorted(tags.items())}, mtime),
            "ids": _Dir({s.short_id: _Root(s) for s in snapshots}, mtime),
        },
        mtime,
    )


class SnapshotFS:
    """The FUSE operations (mfusepy's ``Operations`` protocol), read-only.

    ``on_ready`` runs once the kernel has mounted the file system.
    """

    use_ns = True  # times in nanoseconds, as the snapshots record them

    def __init__(
        self, repo: Repository, snapshots: list[Snapshot], on_ready: Callable[[], None]
    ) -> None:
        self._repo = repo
        self._layout = build_layout(snapshots)
        self._on_ready = on_ready
        self._uid, self._gid = os.getuid(), os.getgid()
        self._blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._open: dict[int, tuple[Node, list[int]]] = {}  # fh -> (node, blob start offsets)
        self._next_fh = 1
        self.mounted = False  # set once the kernel has mounted it

    # ---- resolving paths --------------------------------------------------------------

    @functools.lru_cache(maxsize=TREES_CACHED)  # noqa: B019 (one instance per mount)
    def _children(self, tree_id: str) -> dict[bytes, Node]:
        nodes = decode_tree(self._repo.load_tree_document(tree_id), f"tree {tree_id}")
        return {n.name: n for n in nodes}

    def _resolve(self, path: str) -> _Dir | _Link | _Root | Node:
        parts = [p for p in path.split("/") if p]
        here: _Dir | _Link | _Root | Node = self._layout
        for i, part in enumerate(parts):
            if isinstance(here, _Dir) and part in here.entries:
                here = here.entries[part]
            elif isinstance(here, _Root):
                return self._in_snapshot(here.snapshot.tree, parts[i:])
            else:
                raise _error(errno.ENOENT)
        return here

    def _in_snapshot(self, tree_id: str, parts: list[str]) -> Node:
        node = None
        subtree: str | None = tree_id
        for part in parts:
            if subtree is None:
                raise _error(errno.ENOTDIR)
            node = self._children(subtree).get(os.fsencode(part))
            if node is None:
                raise _error(errno.ENOENT)
            subtree = node.subtree if node.type == "dir" else None
        assert node is not None
        return node

    # ---- the operations -----------------------------------------------------------------

    def init(self, path: str) -> None:
        self.mounted = True
        self._on_ready()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        entry = _guard(self._resolve, path)
        if isinstance(entry, Node):
            return {
                "st_mode": _TYPE_BITS[entry.type] | entry.mode,
                "st_size": len(entry.target) if entry.type == "symlink" else entry.size,
                "st_uid": entry.uid,
                "st_gid": entry.gid,
                "st_nlink": 2 if entry.type == "dir" else max(1, entry.links),
                "st_mtime": entry.mtime_ns,
                "st_ctime": entry.mtime_ns,
                "st_atime": entry.mtime_ns,
                "st_rdev": entry.rdev,
                "st_blocks": (entry.size + 511) // 512,
            }
        if isinstance(entry, _Link):
            mode, mtime, size = stat.S_IFLNK | 0o777, entry.mtime_ns, len(entry.target)
        else:
            mode, size = _DIR_MODE, 0
            mtime = _ns(entry.snapshot) if isinstance(entry, _Root) else entry.mtime_ns
        return {
            "st_mode": mode,
            "st_size": size,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_nlink": 1 if isinstance(entry, _Link) else 2,
            "st_mtime": mtime,
            "st_ctime": mtime,
            "st_atime": mtime,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        entry = _guard(self._resolve, path)
        if isinstance(entry, _Dir):
            names = list(entry.entries)
        elif isinstance(entry, _Root):
            names = [os.fsdecode(n) for n in _guard(self._children, entry.snapshot.tree)]
        elif isinstance(entry, Node) and entry.type == "dir":
            children = _guard(self._children, entry.subtree) if entry.subtree else {}
            names = [os.fsdecode(n) for n in children]
        else:
            raise _error(errno.ENOTDIR)
        return [".", "..", *names]

    def readlink(self, path: str) -> str:
        entry = _guard(self._resolve, path)
        if isinstance(entry, _Link):
            return entry.target
        if isinstance(entry, Node) and entry.type == "symlink":
            return os.fsdecode(entry.target)
        raise _error(errno.EINVAL)

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC):
            raise _error(errno.EROFS)
        entry = _guard(self._resolve, path)
        if not isinstance(entry, Node) or entry.type != "file":
            raise _error(errno.EISDIR if isinstance(entry, _Dir | _Root) else errno.EINVAL)
        starts, offset = [], 0
        for blob_id in entry.content:
            starts.append(offset)
            offset += _guard(self._repo.locate, blob_id).raw_length
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self._open[fh] = (entry, starts)
        return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        node, starts = self._open[fh]
        end = min(offset + size, node.size)
        parts: list[bytes] = []
        index = max(0, bisect.bisect_right(starts, offset) - 1)
        while offset < end and index < len(starts):
            data = _guard(self._blob, node.content[index])
            within = offset - starts[index]
            piece = data[within : within + end - offset]
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
            index += 1
        return b"".join(parts)

    def release(self, path: str, fh: int) -> int:
        self._open.pop(fh, None)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    def _blob(self, blob_id: bytes) -> bytes:
        data = self._blobs.get(blob_id)
        if data is not None:
            self._blobs.move_to_end(blob_id)
            return data
        data = self._repo.load_blob(blob_id)
        self._blobs[blob_id] = data
        self._cached_bytes += len(data)
        while self._cached_bytes > BLOB_CACHE_BYTES and len(self._blobs) > 1:
            _, dropped = self._blobs.popitem(last=False)
            self._cached_bytes -= len(dropped)
        return data


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _guard(func: Callable[..., Any], *args: Any) -> Any:
    """A damaged or missing object is an I/O error for the reader, not a crash."""
    try:
        return func(*args)
    except SafeholdError as exc:
        raise OSError(errno.EIO, str(exc)) from None


def serve(fs: SnapshotFS, mountpoint: str, allow_other: bool = False) -> None:
    """Mount and serve until unmounted (``umount``) or stopped by SIGINT, SIGTERM or
    SIGHUP, which libfuse turns into a clean unmount."""
    fuse = load_fuse()
    options: dict[str, Any] = {"fsname": "safehold", "subtype": "safehold", "ro": True}
    if allow_other:
        options["allow_other"] = True
    try:
        fuse.FUSE(fs, mountpoint, foreground=True, nothreads=True, **options)
    except RuntimeError as exc:
        if fs.mounted:  # libfuse 3 reports a loop ended by a signal as error 8: a clean stop
            return
        raise InvalidArgument(f"cannot mount at {mountpoint} (libfuse error {exc})") from None
