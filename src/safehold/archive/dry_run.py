"""``backup --dry-run``: the backup's walk, reads and dedup without writing anything.

Stands in for the repository writer (``BlobSaver``): each blob is hashed and looked up as
a real backup would, new ones are counted and dropped. So the summary says what a backup
would read and add (raw bytes, before compression) and the repository stays untouched.
"""

from __future__ import annotations

from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.writer import WriteStats

__all__ = ["DryRunSaver"]


class DryRunSaver:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._new: set[bytes] = set()
        self.stats = WriteStats()

    def known(self, blob_id: bytes) -> bool:
        return blob_id in self._repo.index or blob_id in self._new

    def save(self, blob_type: BlobType, data: bytes) -> tuple[bytes, bool]:
        del blob_type  # nothing is packed, so the kind of blob does not matter
        blob_id = self._repo.key.blob_id(data)
        if self.known(blob_id):
            self.stats.blobs_reused += 1
            return blob_id, False
        self._new.add(blob_id)
        self.stats.blobs_new += 1
        self.stats.raw_bytes_new += len(data)
        return blob_id, True
