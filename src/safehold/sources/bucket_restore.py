"""Restoring a bucket snapshot into a bucket (the same or another, any prefix).

Each object is written at its recorded key (the node's ``object.key``), relative to the
target's prefix, with its content type, other headers and user metadata. In a bucket a
key is a name, not a path: ``../x`` under prefix ``p/`` is the key ``p/../x``, still
under ``p/``. A client that cannot write a key exactly (obstore normalises empty, ``.``
and ``..`` segments) refuses it; that object is reported and the rest goes on. Uploads run in a pool of threads, a bounded number at a time;
a large object goes up as a multipart upload, one blob of the repository at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from safehold.archive.progress import NullProgress, Progress
from safehold.archive.tree import doc_name
from safehold.errors import AlreadyExists, InvalidArgument, SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.bucket import KIND, OBJECT_FIELD, prefix_parts
from safehold.sources.bucket_client import Bucket

__all__ = ["BucketRestoreStats", "restore_to_bucket"]

DEFAULT_WORKERS = 8
BUCKET_OVERWRITE_MODES = ("always", "never")
Doc = dict[str, Any]


@dataclass
class BucketRestoreStats:
    objects_restored: int = 0
    objects_skipped: int = 0
    bytes_written: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def restore_to_bucket(
    repo: Repository,
    snapshot: Snapshot,
    bucket: Bucket,
    *,
    overwrite: str = "always",
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> BucketRestoreStats:
    """Write every object of a bucket snapshot under the target bucket's prefix."""
    if snapshot.source.get("kind") != KIND:
        raise InvalidArgument(
            f"snapshot {snapshot.short_id} is not a bucket backup: restore it to a directory"
        )
    if overwrite not in BUCKET_OVERWRITE_MODES:
        raise InvalidArgument("into a bucket, --overwrite must be always or never")
    top = prefix_parts(str(snapshot.source.get("bucket")), str(snapshot.source.get("prefix")))
    return _BucketRestorer(repo, bucket, overwrite == "never", workers, progress).run(
        snapshot.tree, top
    )


class _BucketRestorer:
    def __init__(
        self,
        repo: Repository,
        bucket: Bucket,
        keep_existing: bool,
        workers: int,
        progress: Progress | None,
    ) -> None:
        self._repo = repo
        self._bucket = bucket
        self._keep = keep_existing
        self._workers = max(1, workers)
        self._progress = progress or NullProgress()
        self._lock = threading.Lock()
        self.stats = BucketRestoreStats()

    def run(self, root: str, top: list[bytes]) -> BucketRestoreStats:
        self._bucket.create()
        tree: str | None = root
        for name in top:
            tree = self._subtree(tree, name)
        jobs: deque[tuple[str, Future[None]]] = deque()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="bucket-put") as pool:
            for key, doc in self._objects(tree):
                while len(jobs) >= 2 * self._workers:
                    self._wait(*jobs.popleft())
                jobs.append((key, pool.submit(self._put, key, doc)))
            while jobs:
                self._wait(*jobs.popleft())
        return self.stats

    def _subtree(self, tree: str | None, name: bytes) -> str | None:
        for doc in self._docs(tree):
            if doc_name(doc) == name and doc.get("type") == "dir":
                subtree = doc.get("subtree")
                return subtree if isinstance(subtree, str) else None
        return None

    def _docs(self, tree: str | None) -> list[Doc]:
        if tree is None:
            return []
        nodes = self._repo.load_tree_document(tree).get("nodes")
        return [d for d in nodes if isinstance(d, dict)] if isinstance(nodes, list) else []

    def _objects(self, tree: str | None) -> Iterator[tuple[str, Doc]]:
        """(key, node) of every file below ``tree``; a node without a record keys by path."""
        stack: list[tuple[str | None, str]] = [(tree, "")]
        while stack:
            here, path = stack.pop()
            for doc in self._docs(here):
                name = doc_name(doc).decode("utf-8", "surrogateescape")
                if doc.get("type") == "dir":
                    stack.append((doc.get("subtree"), f"{path}{name}/"))
                elif doc.get("type") == "file":
                    recorded = doc.get(OBJECT_FIELD)
                    key = recorded.get("key") if isinstance(recorded, dict) else None
                    yield (key if isinstance(key, str) else path + name), doc

    def _put(self, key: str, doc: Doc) -> None:
        content = [bytes.fromhex(h) for h in doc.get("content", [])]
        data: bytes | Iterator[bytes]
        if len(content) <= 1:
            data = self._repo.load_blob(content[0]) if content else b""
        else:
            data = (self._repo.load_blob(blob_id) for blob_id in content)
        try:
            self._bucket.put(key, data, _attributes(doc), if_absent=self._keep)
        except AlreadyExists:
            with self._lock:
                self.stats.objects_skipped += 1
            return
        size = int(doc.get("size", 0))
        with self._lock:
            self.stats.objects_restored += 1
            self.stats.bytes_written += size
        self._progress.advance(1, size)

    def _wait(self, key: str, job: Future[None]) -> None:
        try:
            job.result()
        except SafeholdError as exc:
            self._error(key, str(exc))

    def _error(self, key: str, message: str) -> None:
        with self._lock:
            self.stats.errors.append((key, message))
        self._progress.error(key, message)


def _attributes(doc: Doc) -> dict[str, str]:
    recorded = doc.get(OBJECT_FIELD)
    if not isinstance(recorded, dict):
        return {}
    attributes: dict[str, str] = {}
    for group in ("headers", "metadata"):
        values = recorded.get(group)
        if isinstance(values, dict):
            attributes.update({str(k): str(v) for k, v in values.items()})
    if recorded.get("content_type"):
        attributes["Content-Type"] = str(recorded["content_type"])
    return attributes
