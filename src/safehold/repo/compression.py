"""Compression of blob payloads: zstd when it helps, stored as-is when it does not.

A payload is one flag byte (0 = stored, 1 = zstd) followed by the body; the flag sits inside
the encrypted envelope, so it is authenticated with the data.
"""

from __future__ import annotations

import threading

import zstandard

from safehold.errors import CorruptObject

__all__ = ["compress", "decompress"]

STORED = 0
ZSTD = 1

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor  # type: ignore[no-any-return]


def compress(data: bytes | memoryview, level: int) -> bytes:
    """The payload for ``data``; level 0 turns compression off."""
    if level > 0 and len(data) > 64:
        packed = _compressor(level).compress(data)
        if len(packed) < len(data):
            return bytes((ZSTD,)) + packed
    return bytes((STORED,)) + bytes(data)


def decompress(payload: bytes, raw_length: int | None, what: str) -> bytes:
    """The data of a payload; ``raw_length`` (when known) is checked."""
    if not payload:
        raise CorruptObject(what, "empty payload")
    flag = payload[0]
    body = memoryview(payload)[1:]
    if flag == STORED:
        data = bytes(body)
    elif flag == ZSTD:
        try:
            data = _decompressor().decompress(body, max_output_size=raw_length or 0)
        except zstandard.ZstdError as exc:
            raise CorruptObject(what, f"zstd: {exc}") from None
    else:
        raise CorruptObject(what, f"unknown compression flag {flag}")
    if raw_length is not None and len(data) != raw_length:
        raise CorruptObject(what, f"expected {raw_length} bytes, got {len(data)}")
    return data
