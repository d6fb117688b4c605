"""Backups of live buckets: the objects under an ``s3://``/``gs://``/``az://`` prefix.

The snapshot's tree mirrors the keys as paths under a directory named for the bucket and
the prefix (``s3://photos/2026`` → ``/photos/2026/…``), so ``ls``, ``diff``, ``dump``,
``check`` and a restore to a directory work as for files. Each file node carries one more
field, ``object`` (docs/buckets.md): the exact key, the ETag, the last-modified time and
the object's headers and user metadata. A restore into a bucket writes keys from there,
never from the path, so a key that is no safe file name still round-trips exactly.

Incremental: an object whose ETag, size and last-modified time equal the parent
snapshot's record of the same key is not downloaded again; its node is reused. Others are
downloaded by a pool of threads, each streaming its object through the chunker, so memory
stays bounded by the number of workers whatever the object sizes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from safehold import __version__
from safehold.archive.chunker import Chunker
from safehold.archive.metadata import group_name, user_name
from safehold.archive.progress import NullProgress, Progress
from safehold.archive.tree import Node, doc_name, encode_docs, node_doc
from safehold.errors import CorruptObject, InvalidArgument, NotFound, StoreError
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, find_snapshot, format_time, now, parse_time
from safehold.repo.writer import BlobSaver
from safehold.sources.bucket_client import Bucket, ListedObject

__all__ = [
    "OBJECT_FIELD",
    "BucketBackupResult",
    "BucketBackupStats",
    "backup_bucket",
    "plan_layout",
    "prefix_parts",
]

KIND = "bucket"
OBJECT_FIELD = "object"
DEFAULT_WORKERS = 8
MAX_NAME = 255  # NAME_MAX of most file systems: a longer name could not be restored to one
SHORT_NAME = 200  # a shortened name keeps this many bytes, then "~" and 16 hex of a hash
ESCAPED = {"": "%empty", ".": "%dot", "..": "%dotdot"}
STANDARD_HEADERS = frozenset(
    {
        "Cache-Control",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Type",
        "Storage-Class",
    }
)
Doc = dict[str, Any]


# ---- keys as paths ----------------------------------------------------------------------


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).hexdigest()[:16].encode()


def _shortened(name: bytes, key: str) -> bytes:
    """A name no file system refuses, unique to ``key`` (the key itself is in the node)."""
    head = name[:SHORT_NAME].decode("utf-8", "ignore").encode()
    return head + b"~" + _hash(key)


def _component(part: str, key: str) -> tuple[bytes, bool]:
    """One path component for one segment of a key, and whether it is the segment as is."""
    if part in ESCAPED:
        return ESCAPED[part].encode(), False
    name = part.replace("\0", "%00").encode()
    if len(name) > MAX_NAME:
        return _shortened(name, key), False
    return name, "\0" not in part


def plan_layout(keys: Iterable[str]) -> dict[str, tuple[bytes, ...]]:
    """The path (names from the prefix down) at which each key's object is stored.

    A key's segments become the names, except segments that are no safe file name (empty,
    ``.``, ``..``, a NUL, longer than 255 bytes), which are escaped (``%empty``, ``%dot``,
    ``%dotdot``, ``%00``, shortened with a hash). Where two keys would share a path, or an
    object's path is also a directory (keys ``a`` and ``a/b``), the object's name gets
    ``~`` and a hash of its key. Keys whose segments are all safe are placed first, so they
    keep their own paths; the result does not depend on the listing order.
    """
    mapped: dict[str, tuple[tuple[bytes, ...], bool]] = {}
    for key in keys:
        parts = [_component(p, key) for p in key.split("/")]
        mapped[key] = (tuple(n for n, _ in parts), all(ok for _, ok in parts))
    dirs = {names[:i] for names, _ in mapped.values() for i in range(1, len(names))}
    taken: set[tuple[bytes, ...]] = set()
    layout: dict[str, tuple[bytes, ...]] = {}
    for key in sorted(mapped, key=lambda k: (not mapped[k][1], k)):
        path = mapped[key][0]
        if path in dirs or path in taken:
            path = (*path[:-1], _shortened(path[-1], key))
        if path in dirs or path in taken:  # a 64-bit hash collision: not in this universe
            raise InvalidArgument(f"cannot give key {key!r} a path of its own in the snapshot")
        taken.add(path)
        layout[key] = path
    return layout


def prefix_parts(bucket: str, prefix: str) -> list[bytes]:
    """The directories above the objects: the bucket, then the prefix's segments."""
    parts = [bucket, *(p for p in prefix.split("/") if p)] if prefix else [bucket]
    for part in parts:
        if part in (".", "..") or "\0" in part or len(part.encode()) > MAX_NAME:
            raise InvalidArgument(f"unusable bucket or prefix segment {part!r}")
    return [p.encode() for p in parts]


# ---- backup -----------------------------------------------------------------------------


@dataclass
class BucketBackupStats:
    objects_new: int = 0
    objects_changed: int = 0
    objects_unmodified: int = 0
    objects_downloaded: int = 0
    bytes_downloaded: int = 0
    folder_markers: int = 0  # zero-byte "dir/" objects obstore lists as "dir" but cannot get
    total_objects_processed: int = 0
    total_bytes_processed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class BucketBackupResult:
    snapshot: Snapshot
    stats: BucketBackupStats
    data_added: int
    duration: float

    def summary(self) -> dict[str, object]:
        s = self.stats
        return {
            "snapshot_id": self.snapshot.id,
            "source": self.snapshot.source.get("location", ""),
            "objects_new": s.objects_new,
            "objects_changed": s.objects_changed,
            "objects_unmodified": s.objects_unmodified,
            "objects_downloaded": s.objects_downloaded,
            "bytes_downloaded": s.bytes_downloaded,
            "folder_markers_skipped": s.folder_markers,
            "total_files_processed": s.total_objects_processed,
            "total_bytes_processed": s.total_bytes_processed,
            "data_added": self.data_added,
            "total_duration": round(self.duration, 3),
            "errors": len(s.errors),
        }


def backup_bucket(
    repo: Repository,
    bucket: Bucket,
    *,
    tags: list[str] | None = None,
    hostname: str | None = None,
    time_text: str | None = None,
    parent_ref: str | None = None,
    force: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
    ensure_locked: Callable[[], None] | None = None,
) -> BucketBackupResult:
    """List the bucket, save what changed since the parent snapshot, write a snapshot."""
    started = time.monotonic()
    snapshot_time = format_time(parse_time(time_text)) if time_text else now()
    top = prefix_parts(bucket.bucket, bucket.prefix)
    parent = _parent_snapshot(repo, bucket, parent_ref)
    with repo.writer(before_index=ensure_locked) as writer:
        archiver = _BucketArchiver(repo, writer, bucket, force, workers, progress)
        tree = archiver.save(top, parent.tree if parent else None)
    stats = archiver.stats
    snapshot = Snapshot(
        time=snapshot_time,
        tree=tree,
        paths=[bucket.location],
        hostname=hostname or socket.gethostname(),
        username=user_name(os.getuid()),
        tags=sorted(set(tags or [])),
        parent=parent.id if parent else None,
        program_version=f"safehold {__version__}",
        source={
            "kind": KIND,
            "location": bucket.location,
            "endpoint": bucket.endpoint,
            "bucket": bucket.bucket,
            "prefix": bucket.prefix,
            "objects": stats.total_objects_processed,
            "bytes": stats.total_bytes_processed,
        },
    )
    result = BucketBackupResult(snapshot, stats, writer.stats.stored_bytes, 0.0)
    result.duration = time.monotonic() - started
    summary = result.summary()
    snapshot.summary = {k: v for k, v in summary.items() if isinstance(v, int | float)}
    if ensure_locked is not None:
        ensure_locked()
    repo.save_snapshot(snapshot)
    return result


def _parent_snapshot(repo: Repository, bucket: Bucket, ref: str | None) -> Snapshot | None:
    """The newest snapshot of the same bucket and prefix on the same endpoint."""
    snapshots = repo.list_snapshots()
    if ref:
        return find_snapshot(snapshots, ref)
    same = [
        s
        for s in snapshots
        if s.source.get("kind") == KIND
        and s.source.get("location") == bucket.location
        and s.source.get("endpoint", "") == bucket.endpoint
    ]
    return max(same, key=lambda s: (s.datetime, s.id)) if same else None


class _Unreadable(Exception):
    """An object that could not be read from the bucket: reported, left out (exit 3)."""


class _BucketArchiver:
    def __init__(
        self,
        repo: Repository,
        saver: BlobSaver,
        bucket: Bucket,
        force: bool,
        workers: int,
        progress: Progress | None,
    ) -> None:
        self._repo = repo
        self._saver = saver
        self._bucket = bucket
        self._force = force
        self._workers = max(1, workers)
        self._progress = progress or NullProgress()
        self._save_lock = threading.Lock()  # the writer takes blobs from one thread at a time
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self._uid, self._gid = os.getuid(), os.getgid()
        self._user, self._group = user_name(self._uid), group_name(self._gid)
        self._folders: set[str] | None = None
        self.stats = BucketBackupStats()

    # ---- the run ------------------------------------------------------------------------

    def save(self, top: list[bytes], parent_tree: str | None) -> str:
        listed: dict[str, ListedObject] = {}
        for entry in self._bucket.list():
            listed.setdefault(entry.key, entry)
        parents = self._parent_objects(parent_tree, top)
        records = self._collect(listed, parents)
        layout = plan_layout(listed)
        root: dict[bytes, Any] = {}
        for key, doc in records.items():
            *dirs, name = layout[key]
            here = root
            for part in dirs:
                here = here.setdefault(part, {})
            here[name] = doc
        tree, mtime = self._save_dir(root)
        for name in reversed(top):
            tree, _ = self._save_tree([self._dir_doc(name, tree, mtime)])
        return tree

    def _collect(self, listed: dict[str, ListedObject], parents: dict[str, Doc]) -> dict[str, Doc]:
        """Every object's node (without its name): the parent's, or a fresh download."""
        records: dict[str, Doc] = {}
        jobs: deque[tuple[ListedObject, Future[Doc]]] = deque()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="bucket-get") as pool:
            for key, entry in listed.items():
                parent = parents.get(key)
                reused = self._unchanged(entry, parent)
                if reused is not None:
                    records[key] = reused
                    self._count(entry.size, "objects_unmodified")
                    continue
                while len(jobs) >= 2 * self._workers:
                    self._finish(*jobs.popleft(), records, listed)
                jobs.append((entry, pool.submit(self._fetch, entry, parent)))
            while jobs:
                self._finish(*jobs.popleft(), records, listed)
        return records

    def _finish(
        self,
        entry: ListedObject,
        job: Future[Doc],
        records: dict[str, Doc],
        listed: dict[str, ListedObject],
    ) -> None:
        try:
            records[entry.key] = job.result()
        except NotFound:
            if entry.size == 0 and self._is_folder(entry.key, listed):
                # "photos/" (the console's "create folder"), listed by obstore as "photos":
                # no data, and the directory is in the tree anyway
                with self._stats_lock:
                    self.stats.folder_markers += 1
                return
            message = "deleted while the backup ran (listed, then gone): not saved"
            if entry.size == 0:
                message = (
                    "not found when fetched: deleted while the backup ran, or an empty folder "
                    f"marker {entry.key + '/'!r} (obstore cannot fetch those): not saved"
                )
            self._error(entry.key, message)
        except _Unreadable as exc:
            self._error(entry.key, str(exc))

    def _is_folder(self, key: str, listed: dict[str, ListedObject]) -> bool:
        """Whether other keys lie below ``key/`` (computed once, on the first marker)."""
        if self._folders is None:
            self._folders = set()
            for listed_key in listed:
                parts = listed_key.split("/")
                self._folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return key in self._folders

    def _unchanged(self, entry: ListedObject, parent: Doc | None) -> Doc | None:
        if parent is None or self._force or parent.get("type") != "file":
            return None
        recorded = parent.get(OBJECT_FIELD)
        if (
            not isinstance(recorded, dict)
            or recorded.get("etag") != entry.etag
            or recorded.get("last_modified_ns") != entry.last_modified_ns
            or parent.get("size") != entry.size
            or not entry.etag
        ):
            return None
        try:
            content = [bytes.fromhex(h) for h in parent.get("content", [])]
        except (TypeError, ValueError):
            return None
        with self._save_lock:
            known = all(self._saver.known(c) for c in content)
        if not known:
            return None  # the parent's data is gone from the index: read it again
        return {k: v for k, v in parent.items() if k not in ("name", "name_b64")}

    # ---- one object (pool threads) ------------------------------------------------------

    def _chunker(self) -> Chunker:
        chunker: Chunker | None = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = self._local.chunker = Chunker(self._repo.config)
        return chunker

    def _fetch(self, entry: ListedObject, parent: Doc | None) -> Doc:
        """Download the object's current version and save it; its node without the name.

        Failures to read the object raise ``_Unreadable`` (the object is reported and left
        out); failures to write the repository propagate and end the backup.
        """
        try:
            fetched = self._bucket.get(entry.key)
        except NotFound:
            raise
        except StoreError as exc:
            raise _Unreadable(str(exc)) from exc
        info = fetched.info  # the version served: a newer one than listed is taken as is
        if (info.etag, info.size) == (entry.etag, entry.size):
            # the listed version: keep the listing's time, which may be finer than the
            # GET's Last-Modified header (whole seconds), so the next backup compares equal
            info = entry
        content: list[bytes] = []
        size = 0
        for piece in self._pieces(fetched.stream, info.size):
            with self._save_lock:
                blob_id, _ = self._saver.save(BlobType.DATA, piece)
            content.append(blob_id)
            size += len(piece)
        if size != info.size:
            raise _Unreadable(f"read {size} bytes of {info.size}: not saved")
        with self._stats_lock:
            self.stats.objects_downloaded += 1
            self.stats.bytes_downloaded += size
        self._count(size, "objects_new" if parent is None else "objects_changed")
        return self._file_doc(entry.key, info, fetched.attributes, content)

    def _pieces(self, stream: BinaryIO, size: int) -> Iterator[bytes]:
        """The object's chunks; an object up to the largest chunk is read in one piece."""
        chunker = self._chunker()
        try:
            if size <= chunker.max_size:
                yield from chunker.split(stream.read())
            else:
                yield from chunker.chunks(stream)
        except StoreError as exc:  # the connection broke while the object was read
            raise _Unreadable(str(exc)) from exc

    def _file_doc(
        self, key: str, info: ListedObject, attributes: dict[str, str], content: list[bytes]
    ) -> Doc:
        mtime = info.last_modified_ns
        node = Node(b"", "file", 0o644, mtime_ns=mtime, ctime_ns=mtime, size=info.size)
        node.content = content
        doc = self._owned(node)
        headers = {k: v for k, v in attributes.items() if k in STANDARD_HEADERS}
        metadata = {k: v for k, v in attributes.items() if k not in STANDARD_HEADERS}
        doc[OBJECT_FIELD] = {
            "key": key,
            "etag": info.etag,
            "last_modified_ns": mtime,
            "content_type": headers.pop("Content-Type", ""),
            "headers": dict(sorted(headers.items())),
            "metadata": dict(sorted(metadata.items())),
        }
        return doc

    def _owned(self, node: Node) -> Doc:
        node.uid, node.gid, node.user, node.group = self._uid, self._gid, self._user, self._group
        doc = node_doc(node)
        del doc["name"]
        return doc

    # ---- trees --------------------------------------------------------------------------

    def _save_dir(self, entries: dict[bytes, Any]) -> tuple[str, int]:
        """The tree of one directory of the layout, and its newest object's time."""
        docs: list[Doc] = []
        newest = 0
        for name, entry in sorted(entries.items()):
            if isinstance(entry, dict) and "type" not in entry:
                subtree, mtime = self._save_dir(entry)
                docs.append(self._dir_doc(name, subtree, mtime))
            else:
                mtime = int(entry.get("mtime_ns", 0))
                docs.append({"name": name.decode(), **entry})
            newest = max(newest, mtime)
        tree, _ = self._save_tree(docs)
        return tree, newest

    def _dir_doc(self, name: bytes, subtree: str, mtime: int) -> Doc:
        node = Node(b"", "dir", 0o755, mtime_ns=mtime, ctime_ns=mtime, subtree=subtree)
        return {"name": name.decode(), **self._owned(node)}

    def _save_tree(self, docs: list[Doc]) -> tuple[str, bool]:
        with self._save_lock:
            blob_id, added = self._saver.save(BlobType.TREE, encode_docs(docs))
        return blob_id.hex(), added

    def _parent_objects(self, tree: str | None, top: list[bytes]) -> dict[str, Doc]:
        """The parent snapshot's object nodes by key; a damaged parent only costs speed."""
        try:
            for name in top:
                tree = _subtree(self._load(tree), name)
            found: dict[str, Doc] = {}
            stack = [tree]
            while stack:
                for doc in self._load(stack.pop()):
                    if doc.get("type") == "dir" and isinstance(doc.get("subtree"), str):
                        stack.append(doc["subtree"])
                    elif isinstance(doc.get(OBJECT_FIELD), dict):
                        found.setdefault(str(doc[OBJECT_FIELD].get("key")), doc)
            return found
        except (CorruptObject, StoreError, TypeError, ValueError):
            return {}

    def _load(self, tree: str | None) -> list[Doc]:
        if tree is None:
            return []
        nodes = self._repo.load_tree_document(tree).get("nodes")
        if not isinstance(nodes, list):
            raise CorruptObject(f"tree {tree}", "not a tree document")
        return [d for d in nodes if isinstance(d, dict)]

    # ---- accounting ---------------------------------------------------------------------

    def _count(self, size: int, counter: str) -> None:
        with self._stats_lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self.stats.total_objects_processed += 1
            self.stats.total_bytes_processed += size
        self._progress.advance(1, size)

    def _error(self, key: str, message: str) -> None:
        with self._stats_lock:
            self.stats.errors.append((key, message))
        self._progress.error(key, message)


def _subtree(docs: list[Doc], name: bytes) -> str | None:
    for doc in docs:
        if doc_name(doc) == name and doc.get("type") == "dir":
            subtree = doc.get("subtree")
            return subtree if isinstance(subtree, str) else None
    return None
