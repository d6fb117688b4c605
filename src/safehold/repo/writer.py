"""Saving blobs: compress and seal in a thread pool, pack in order, upload in the background.

One producer thread calls ``save``; zstd, AES-GCM and the store's writes release the GIL,
so the pools give real parallelism. Memory is bounded by the number of blobs in flight and
packs waiting for upload.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from safehold.repo.compression import compress
from safehold.repo.crypto import MasterKey
from safehold.repo.index import Index
from safehold.repo.pack import BlobType, PackEntry, PackWriter
from safehold.storage.base import ObjectStore

__all__ = ["BlobSaver", "BlobWriter", "WriteStats"]

# Packs uploaded at once, unless the store says (``store.connections``, set by the global
# ``--connections``): each holds a whole pack in memory until it is written.
MAX_UPLOADS_IN_FLIGHT = 2
# Small blobs are sealed in batches: one pool task per blob cost more in hand-offs
# than zstd and AES took for a 10 KiB file.
BATCH_BYTES = 1 << 20
BATCH_BLOBS = 256


class BlobSaver(Protocol):
    """What the backup pipeline needs from a repository writer."""

    def save(self, blob_type: BlobType, data: bytes) -> tuple[bytes, bool]: ...

    def known(self, blob_id: bytes) -> bool: ...


@dataclass
class WriteStats:
    blobs_new: int = 0
    blobs_reused: int = 0
    raw_bytes_new: int = 0
    stored_bytes: int = 0
    packs: int = 0


@dataclass
class _Blob:
    type: BlobType
    id: bytes
    data: bytes


@dataclass
class _Pending:
    """A batch of blobs being sealed by one pool task."""

    blobs: list[tuple[BlobType, bytes, int]]
    sealed: Future[list[bytes]]


class BlobWriter:
    def __init__(
        self,
        store: ObjectStore,
        key: MasterKey,
        index: Index,
        pack_size: int,
        compression_level: int,
        on_pack: Callable[[str, list[PackEntry]], None],
        workers: int | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._index = index
        self._pack_size = pack_size
        self._level = compression_level
        self._on_pack = on_pack
        self._workers = workers or max(2, os.cpu_count() or 2)
        self._seal_pool = ThreadPoolExecutor(self._workers, thread_name_prefix="seal")
        self._max_uploads = max(1, int(getattr(store, "connections", MAX_UPLOADS_IN_FLIGHT)))
        self._upload_pool = ThreadPoolExecutor(self._max_uploads, thread_name_prefix="upload")
        self._pending: deque[_Pending] = deque()
        self._batch: list[_Blob] = []
        self._batch_bytes = 0
        self._pending_ids: set[bytes] = set()
        self._packs = {t: PackWriter() for t in BlobType}
        self._uploads: deque[Future[None]] = deque()
        self.stats = WriteStats()

    def known(self, blob_id: bytes) -> bool:
        return blob_id in self._index or blob_id in self._pending_ids

    def save(self, blob_type: BlobType, data: bytes) -> tuple[bytes, bool]:
        """Store ``data`` unless the repository has it; returns (blob id, newly added)."""
        blob_id = self._key.blob_id(data)
        if self.known(blob_id):
            self.stats.blobs_reused += 1
            return blob_id, False
        self._pending_ids.add(blob_id)
        self._batch.append(_Blob(blob_type, blob_id, data))
        self._batch_bytes += len(data)
        self.stats.blobs_new += 1
        self.stats.raw_bytes_new += len(data)
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_BLOBS:
            self._submit_batch()
        return blob_id, True

    def save_sealed(
        self, blob_type: BlobType, blob_id: bytes, sealed: bytes, raw_length: int
    ) -> None:
        """Pack a blob already sealed by this repository's key, as is (prune's repacking)."""
        self._pending_ids.add(blob_id)
        self.stats.blobs_new += 1
        self.stats.raw_bytes_new += raw_length
        pack = self._packs[blob_type]
        pack.add(blob_type, blob_id, sealed, raw_length)
        if len(pack) >= self._pack_size:
            self._upload(pack)

    def _submit_batch(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        sealed = self._seal_pool.submit(self._seal, [b.data for b in batch])
        self._pending.append(_Pending([(b.type, b.id, len(b.data)) for b in batch], sealed))
        while len(self._pending) > 2 * self._workers or (
            self._pending and self._pending[0].sealed.done()
        ):
            self._pack_next()

    def _seal(self, blobs: list[bytes]) -> list[bytes]:
        return [self._key.seal(compress(data, self._level)) for data in blobs]

    def _pack_next(self) -> None:
        item = self._pending.popleft()
        for (blob_type, blob_id, raw_length), sealed in zip(
            item.blobs, item.sealed.result(), strict=True
        ):
            pack = self._packs[blob_type]
            pack.add(blob_type, blob_id, sealed, raw_length)
            if len(pack) >= self._pack_size:
                self._upload(pack)

    def _upload(self, pack: PackWriter) -> None:
        pack_id, data, entries = pack.finish(self._key)
        self.stats.packs += 1
        self.stats.stored_bytes += len(data)
        while len(self._uploads) >= self._max_uploads:
            self._uploads.popleft().result()
        self._uploads.append(self._upload_pool.submit(self._write_pack, pack_id, data, entries))

    def _write_pack(self, pack_id: str, data: bytes, entries: list[PackEntry]) -> None:
        self._store.put(f"data/{pack_id[:2]}/{pack_id}", data)
        self._on_pack(pack_id, entries)

    def flush(self) -> None:
        """Pack and upload everything saved so far; on return all of it is in the store."""
        if self._batch:
            self._submit_batch()
        while self._pending:
            self._pack_next()
        for pack in self._packs.values():
            if pack.entries:
                self._upload(pack)
        while self._uploads:
            self._uploads.popleft().result()

    def close(self) -> None:
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._upload_pool.shutdown(wait=True, cancel_futures=True)
