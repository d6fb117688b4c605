"""The file archiver, adapted to a live PostgreSQL data directory.

Inside pg_backup_start/pg_backup_stop, files change and vanish while they are read, and
that is expected: WAL replay from the backup's start point rewrites every page changed
since (full-page writes are forced on during a backup). So, as pg_basebackup does:
- a file that changes while it is read is stored as read (the file archiver would retry
  and finally leave it out, which here would lose a relation file);
- a file that vanishes between listing and reading (a dropped table, a removed temp
  file) is skipped silently.

Both override private hooks of ``Archiver``; see the report asking for a public
``tolerate_changes`` option there.
"""

from __future__ import annotations

import os

from safehold.archive.backup import Archiver
from safehold.repo.pack import BlobType
from safehold.repo.writer import BlobSaver

__all__ = ["LiveArchiver", "TreeRecorder"]

READ_SIZE = 8 << 20


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


class LiveArchiver(Archiver):
    vanished = 0

    def _read_file(self, path: bytes, st: os.stat_result) -> tuple[int, list[bytes]]:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
        try:
            fd = os.open(path, flags)
        except PermissionError:
            fd = os.open(path, flags & ~getattr(os, "O_NOATIME", 0))
        try:
            if st.st_size <= self._chunker.max_size:
                parts = []
                while part := os.read(fd, READ_SIZE):
                    parts.append(part)
                data = b"".join(parts)
                content = [self._saver.save(BlobType.DATA, c)[0] for c in self._chunker.split(data)]
                return len(data), content
            with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                return self._save_content(f)
        finally:
            os.close(fd)

    def _error(self, path: bytes, message: str) -> None:
        if not os.path.lexists(path):
            self.vanished += 1
            return
        super()._error(path, message)
