"""The index: where each blob lives (pack, offset, length), loaded whole into memory.

Index objects are sealed JSON documents (see docs/FORMAT.md); each backup writes one or a
few. In memory a single dict maps the 32-byte blob id to its location.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from safehold.errors import CorruptObject
from safehold.repo.pack import BlobType, PackEntry

__all__ = ["BlobLocation", "Index", "encode_index"]


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
        """Add a decoded index document; the loading hot path, so no intermediate objects."""
        types = _TYPES
        blobs = self._blobs
        try:
            for p in doc["packs"]:
                pack = p["id"]
                for b in p["blobs"]:
                    blob_id = bytes.fromhex(b["id"])
                    if blob_id not in blobs:
                        blobs[blob_id] = BlobLocation(
                            pack, types[b["type"]], b["offset"], b["length"], b["raw_length"]
                        )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObject(what, f"not an index document ({exc})") from None

    def remove_packs(self, packs: set[str]) -> None:
        self._blobs = {k: v for k, v in self._blobs.items() if v.pack not in packs}

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        return iter(self._blobs.items())

    def packs(self) -> set[str]:
        return {loc.pack for loc in self._blobs.values()}


_TYPES = {t.name.lower(): t for t in BlobType}


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
