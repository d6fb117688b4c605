"""The repository's ``config`` object: format version in clear, parameters sealed.

The parameters are fixed at ``init``: changing the chunker would stop deduplication
against existing data, and the chunker seed is secret so chunk boundaries do not reveal
file contents.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, fields

from safehold.errors import CorruptObject, InvalidArgument
from safehold.repo.crypto import MasterKey

__all__ = ["FORMAT_VERSION", "RepoConfig", "read_version"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RepoConfig:
    id: str
    chunk_min: int = 512 * 1024
    chunk_avg: int = 512 * 1024
    chunk_max: int = 8 * 1024 * 1024
    chunk_seed: int = 0
    compression_level: int = 3
    pack_size: int = 16 * 1024 * 1024

    @classmethod
    def generate(cls, **overrides: int) -> RepoConfig:
        seed = int.from_bytes(os.urandom(7), "little")  # pyfastcdc wants seed < 2**63
        config = cls(id=os.urandom(16).hex(), chunk_seed=seed, **overrides)
        config.validate()
        return config

    def validate(self) -> None:
        """Refuse parameters the chunker or the pack format cannot work with."""
        if not (64 <= self.chunk_min <= 1 << 20 and 256 <= self.chunk_avg <= 4 << 20):
            raise InvalidArgument("chunk sizes out of range: min 64 B-1 MiB, avg 256 B-4 MiB")
        if not (1024 <= self.chunk_max <= 16 << 20):
            raise InvalidArgument("chunk max out of range: 1 KiB-16 MiB")
        if not self.chunk_min <= self.chunk_avg <= self.chunk_max:
            raise InvalidArgument("chunk sizes must satisfy min <= avg <= max")
        if not 0 <= self.compression_level <= 22:
            raise InvalidArgument("compression level must be 0 (off) to 22")
        if self.pack_size < 1024:
            raise InvalidArgument("pack size must be at least 1 KiB")

    def to_bytes(self, key: MasterKey) -> bytes:
        sealed = key.seal(json.dumps(asdict(self)).encode())
        doc = {"version": FORMAT_VERSION, "data": base64.b64encode(sealed).decode()}
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, key: MasterKey) -> RepoConfig:
        read_version(raw)
        sealed = base64.b64decode(json.loads(raw)["data"])
        try:
            doc = json.loads(key.open(sealed, "config"))
            known = {f.name for f in fields(cls)}  # fields of later versions are ignored
            return cls(**{k: v for k, v in doc.items() if k in known})
        except (TypeError, ValueError) as exc:
            raise CorruptObject("config", str(exc)) from None


def read_version(raw: bytes) -> int:
    """The format version, readable without a key; refuses versions this build cannot read."""
    try:
        version = json.loads(raw)["version"]
    except (ValueError, KeyError, TypeError):
        raise CorruptObject("config", "not a safehold config object") from None
    if version != FORMAT_VERSION:
        raise CorruptObject("config", f"format version {version} is not supported")
    return int(version)
