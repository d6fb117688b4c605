"""Packs: many sealed blobs in one object, with an encrypted header at the end.

Layout: ``blob_0 || blob_1 || … || sealed header || header length (u32 LE) || pack version
(u8) || key type (u8)``. The header lists every blob in order (type, stored length, raw
length, id); offsets follow from the lengths. The index repeats this, and ``repair index``
rebuilds it from the headers alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from safehold.errors import CorruptObject
from safehold.repo.crypto import MasterKey, content_hash
from safehold.repo.limits import MAX_PACK_HEADER_BYTES

__all__ = ["BlobType", "PackEntry", "PackWriter", "parse_header", "tail_length"]

TRAILER_SIZE = 6

PACK_VERSION = 1
KEY_TYPE_SYMMETRIC = 0
_TRAILER = struct.Struct("<IBB")
_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct("<BII32s")


class BlobType(IntEnum):
    DATA = 0
    TREE = 1


_BLOB_TYPES = frozenset(int(t) for t in BlobType)


@dataclass(frozen=True, slots=True)
class PackEntry:
    type: BlobType
    id: bytes
    offset: int
    length: int
    raw_length: int


def tail_length(trailer: bytes, what: str) -> int:
    """How many bytes from the end of a pack hold its header and trailer; a trailer of
    another version or key type is refused (FORMAT.md §6: reserved for later formats)."""
    if len(trailer) < _TRAILER.size:
        raise CorruptObject(what, "truncated pack: no trailer")
    header_len, version, key_type = _TRAILER.unpack_from(trailer, len(trailer) - _TRAILER.size)
    if version != PACK_VERSION or key_type != KEY_TYPE_SYMMETRIC:
        raise CorruptObject(
            what,
            f"unsupported pack version {version}/key type {key_type}"
            " (truncated, damaged or of a later format)",
        )
    if header_len > MAX_PACK_HEADER_BYTES:
        raise CorruptObject(what, f"pack header of {header_len} bytes claimed; refusing")
    return int(header_len) + _TRAILER.size


class PackWriter:
    """Accumulates sealed blobs in memory until the pack is big enough to upload."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # joined once at the end: no regrowing buffer
        self._size = 0
        self.entries: list[PackEntry] = []

    def __len__(self) -> int:
        return self._size

    def add(self, blob_type: BlobType, blob_id: bytes, sealed: bytes, raw_length: int) -> None:
        self.entries.append(PackEntry(blob_type, blob_id, self._size, len(sealed), raw_length))
        self._parts.append(sealed)
        self._size += len(sealed)

    def finish(self, key: MasterKey) -> tuple[str, bytes, list[PackEntry]]:
        """The pack id, bytes and entries; the writer is empty afterwards."""
        header = bytearray(_COUNT.pack(len(self.entries)))
        for e in self.entries:
            header += _ENTRY.pack(e.type, e.length, e.raw_length, e.id)
        sealed_header = key.seal(bytes(header))
        trailer = _TRAILER.pack(len(sealed_header), PACK_VERSION, KEY_TYPE_SYMMETRIC)
        data = b"".join([*self._parts, sealed_header, trailer])
        entries = self.entries
        self._parts, self._size, self.entries = [], 0, []
        return content_hash(data), data, entries


def parse_header(key: MasterKey, tail: bytes, pack_size: int, what: str) -> list[PackEntry]:
    """The entries of a pack, from its last bytes (enough to hold header and trailer)."""
    if len(tail) < _TRAILER.size:
        raise CorruptObject(what, "truncated pack: no trailer")
    header_len, version, key_type = _TRAILER.unpack_from(tail, len(tail) - _TRAILER.size)
    if version != PACK_VERSION or key_type != KEY_TYPE_SYMMETRIC:
        raise CorruptObject(what, f"unsupported pack version {version}/key type {key_type}")
    start = len(tail) - _TRAILER.size - header_len
    if start < 0:
        raise CorruptObject(what, "truncated pack: header longer than the pack")
    header = key.open(tail[start : start + header_len], f"{what} header")
    if len(header) < _COUNT.size:
        raise CorruptObject(what, "pack header is too short")
    (count,) = _COUNT.unpack_from(header, 0)
    if len(header) != _COUNT.size + count * _ENTRY.size:
        raise CorruptObject(what, "pack header has the wrong length")
    entries, offset = [], 0
    for i in range(count):
        btype, length, raw_length, blob_id = _ENTRY.unpack_from(header, 4 + i * _ENTRY.size)
        if btype not in _BLOB_TYPES:
            raise CorruptObject(what, f"unknown blob type {btype} in pack header")
        entries.append(PackEntry(BlobType(btype), blob_id, offset, length, raw_length))
        offset += length
    if offset + header_len + _TRAILER.size != pack_size:
        raise CorruptObject(what, "pack size does not match its header")
    return entries
