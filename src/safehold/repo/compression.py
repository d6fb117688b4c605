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


def decompress(payload: bytes, raw_length: int | None, what: str, limit: int) -> bytes:
    """The data of a payload, never more than ``limit`` bytes; ``raw_length`` (when known)
    is checked.

    A payload is untrusted input: a frame may declare 2^40 bytes in 60, or honestly
    expand 76 KB into a GiB. The declared size is checked against ``raw_length`` and
    ``limit`` before anything is allocated, and a frame that declares no size is read in
    pieces, stopping past the bound.
    """
    if not payload:
        raise CorruptObject(what, "empty payload")
    bound = limit if raw_length is None else raw_length
    if bound > limit:
        raise CorruptObject(what, f"{raw_length} bytes is more than the {limit} a reader accepts")
    flag = payload[0]
    body = memoryview(payload)[1:]
    if flag == STORED:
        data = bytes(body)
    elif flag == ZSTD:
        data = _unzstd(body, bound, what)
    else:
        raise CorruptObject(what, f"unknown compression flag {flag}")
    if raw_length is not None and len(data) != raw_length:
        raise CorruptObject(what, f"expected {raw_length} bytes, got {len(data)}")
    if len(data) > limit:
        raise CorruptObject(what, f"more than the {limit} bytes a reader accepts")
    return data


def _unzstd(body: memoryview, bound: int, what: str) -> bytes:
    try:
        declared = zstandard.frame_content_size(body)
        if declared > bound:
            raise CorruptObject(
                what, f"zstd frame declares {declared} bytes, at most {bound} expected"
            )
        if declared >= 0:
            return _decompressor().decompress(body)
        with _decompressor().stream_reader(body) as reader:  # no size declared: in pieces
            pieces, held = [], 0
            while held <= bound and (piece := reader.read(min(bound + 1 - held, 1 << 20))):
                pieces.append(piece)
                held += len(piece)
            return b"".join(pieces)
    except zstandard.ZstdError as exc:
        raise CorruptObject(what, f"zstd: {exc}") from None
