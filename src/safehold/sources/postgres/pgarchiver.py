"""Remembering the trees a PostgreSQL backup saves, for the backup_label graft.

The data directory itself is read by the file archiver in live mode
(``Archiver(..., live=True)``): as pg_basebackup does, a file that changes while it is
read is stored as read and one that vanishes is skipped; WAL replay from the backup's
start point makes them consistent.
"""

from __future__ import annotations

from safehold.repo.pack import BlobType
from safehold.repo.writer import BlobSaver

__all__ = ["TreeRecorder"]


class TreeRecorder:
    """A ``BlobSaver`` that remembers the tree documents saved through it.

    Trees of this run are not readable from the repository until the writer flushes; the
    backup_label graft needs them before that.
    """

    def __init__(self, saver: BlobSaver) -> None:
        self._saver = saver
        self.trees: dict[str, bytes] = {}

    def save(self, blob_type: BlobType, data: bytes) -> tuple[bytes, bool]:
        blob_id, new = self._saver.save(blob_type, data)
        if blob_type is BlobType.TREE:
            self.trees[blob_id.hex()] = data
        return blob_id, new

    def known(self, blob_id: bytes) -> bool:
        return self._saver.known(blob_id)
