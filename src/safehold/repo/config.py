"""The repository's ``config`` object: format version in clear, parameters sealed.

The parameters are fixed at ``init``: changing the chunker would stop deduplication
against existing data, and the chunker seed is secret so chunk boundaries do not reveal
file contents.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass

from safehold.errors import CorruptObject
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
        return cls(id=os.urandom(16).hex(), chunk_seed=seed, **overrides)

    def to_bytes(self, key: MasterKey) -> bytes:
        sealed = key.seal(json.dumps(asdict(self)).encode())
        doc = {"version": FORMAT_VERSION, "data": base64.b64encode(sealed).decode()}
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, key: MasterKey) -> RepoConfig:
        read_version(raw)
        sealed = base64.b64decode(json.loads(raw)["data"])
        try:
            return cls(**json.loads(key.open(sealed, "config")))
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
