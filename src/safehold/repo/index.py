"""The index: where each blob lives (pack, offset, length), loaded whole into memory.

Index objects are sealed JSON documents (see docs/FORMAT.md); each backup writes one or a
few. In memory a single dict maps the 32-byte blob id to its location.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from safehold.errors import CorruptObject
from safehold.repo.pack import BlobType, PackEntry

__all__ = ["BlobLocation", "Index", "document_entries", "encode_index", "hex_id"]


class BlobLocation(NamedTuple):
    pack: str
    type: BlobType
    offset: int
    length: int
    raw_length: int


class Index:
    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, blob_id: bytes) -> BlobLocation | None:
        return self._blobs.get(blob_id)

    def add_pack(self, pack: str, entries: Iterable[PackEntry]) -> None:
        for e in entries:
            self._blobs.setdefault(
                e.id, BlobLocation(pack, e.type, e.offset, e.length, e.raw_length)
            )

    def add_document(self, doc: Any, what: str) -> None:
        """Add a decoded index document, checked whole first (a bad one adds nothing).

        The loading hot path, so no intermediate objects beyond one list per document.
        """
        found = list(document_entries(doc, what))
        blobs = self._blobs
        for blob_id, loc in found:
            if blob_id not in blobs:
                blobs[blob_id] = loc

    def remove_packs(self, packs: set[str]) -> None:
        self._blobs = {k: v for k, v in self._blobs.items() if v.pack not in packs}

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        return iter(self._blobs.items())

    def packs(self) -> set[str]:
        return {loc.pack for loc in self._blobs.values()}


_TYPES = {t.name.lower(): t for t in BlobType}
_U32, _I63 = 2**32 - 1, 2**63 - 1
SEALED_OVERHEAD = 28  # nonce and tag (FORMAT.md §2)
_MIN_LENGTH = SEALED_OVERHEAD + 1


def document_entries(doc: Any, what: str) -> Iterator[tuple[bytes, BlobLocation]]:
    """Every (blob id, location) of an index document, each field checked against the
    format (FORMAT.md §7): ids of 64 hex, a known type, integers in range.

    ``CorruptObject`` names the first field that is wrong, in one line.
    """
    packs = doc.get("packs") if isinstance(doc, dict) else None
    if not isinstance(packs, list):
        raise CorruptObject(what, "not an index document (no list of packs)")
    for p in packs:
        if not isinstance(p, dict) or not isinstance(p.get("blobs"), list):
            raise CorruptObject(what, "not an index document (a pack without a list of blobs)")
        pack = hex_id(p.get("id"), what, "pack id")
        for b in p["blobs"]:
            if type(b) is dict:  # every command loads every entry: the checks inline
                i, t, o = b.get("id"), b.get("type"), b.get("offset")
                n, r = b.get("length"), b.get("raw_length")
                if (
                    type(o) is int  # a bool is no int here
                    and type(n) is int
                    and type(r) is int
                    and 0 <= o <= _I63
                    and _MIN_LENGTH <= n <= _U32
                    and 0 <= r <= _U32
                    and type(t) is str
                    and t in _TYPES
                    and type(i) is str
                    and len(i) == 64
                    and (blob_id := _from_hex(i)).hex() == i  # 64 lowercase hex digits
                ):
                    yield blob_id, BlobLocation(pack, _TYPES[t], o, n, r)
                    continue
            yield _checked_entry(pack, b, what)  # raises, naming the field


def _from_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _checked_entry(pack: str, b: Any, what: str) -> tuple[bytes, BlobLocation]:
    if not isinstance(b, dict):
        raise CorruptObject(what, f"pack {pack}: a blob entry is not an object")
    type_name = b.get("type")
    blob_type = _TYPES.get(type_name) if isinstance(type_name, str) else None
    if blob_type is None:
        raise CorruptObject(what, f"pack {pack}: unknown blob type {type_name!r:.40}")
    return (
        bytes.fromhex(hex_id(b.get("id"), what, "blob id")),
        BlobLocation(
            pack,
            blob_type,
            _integer(b, "offset", 0, _I63, what),
            _integer(b, "length", _MIN_LENGTH, _U32, what),
            _integer(b, "raw_length", 0, _U32, what),
        ),
    )


def hex_id(value: object, what: str, field: str) -> str:
    """A 64-hex (32-byte) id as the format writes it, lowercase; else ``CorruptObject``."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise CorruptObject(what, f"{field} {str(value)[:80]!r} is not 64 lowercase hex digits")
    return value


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _integer(doc: dict[str, Any], key: str, low: int, high: int, what: str) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CorruptObject(
            what, f"blob {key} {str(value)[:40]!r} is not an integer in {low}..{high}"
        )
    return value


def encode_index(packs: dict[str, list[PackEntry]]) -> bytes:
    doc = {
        "packs": [
            {
                "id": pack,
                "blobs": [
                    {
                        "id": e.id.hex(),
                        "type": e.type.name.lower(),
                        "offset": e.offset,
                        "length": e.length,
                        "raw_length": e.raw_length,
                    }
                    for e in entries
                ],
            }
            for pack, entries in packs.items()
        ]
    }
    return json.dumps(doc, separators=(",", ":")).encode()
