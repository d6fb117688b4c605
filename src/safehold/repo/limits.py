"""What a reader accepts from a repository: the bounds that keep a hostile one from
costing unbounded memory or time (docs/FORMAT.md, "A reader's duties").

Whoever can write to the store can make a document or blob claim any size; these bounds
are checked before anything of that size is allocated. Each is far above what safehold
writes: data blobs are at most the configured ``chunk_max``, a tree entry is a few
hundred bytes.
"""

from __future__ import annotations

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_LOG_FILE_BYTES",
    "MAX_PACK_HEADER_BYTES",
    "MAX_TREE_BYTES",
]

MAX_TREE_BYTES = 256 << 20  # one directory document: about a million entries
MAX_DOCUMENT_BYTES = {
    "index": 512 << 20,  # an index document of a backup that wrote millions of blobs
    "snapshots": 64 << 20,
    "locks": 1 << 20,
}
MAX_LOG_FILE_BYTES = (1 << 30) + (1 << 20)  # a WAL segment may be 1 GiB (--wal-segsize)
MAX_PACK_HEADER_BYTES = 64 << 20  # 41 bytes per blob: over 1.6 million blobs in one pack
MAX_DEPTH = 2048  # directory levels below the root: a path of one-letter names fits PATH_MAX
