"""Sealing objects: authenticated encryption and keyed content ids.

Every encrypted object on the store is ``nonce (12 bytes) || AES-256-GCM ciphertext || tag
(16 bytes)`` with a fresh random nonce, so identical plaintexts never look alike on disk.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safehold.errors import CorruptObject

__all__ = ["NONCE_SIZE", "OVERHEAD", "MasterKey", "content_hash"]

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


@dataclass(frozen=True)
class MasterKey:
    """The repository's secret: one key seals objects, the other keys blob ids."""

    encryption: bytes
    id_key: bytes

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32), os.urandom(32))

    @functools.cached_property
    def _aead(self) -> AESGCM:
        """Built once: constructing the cipher cost as much as sealing a small blob."""
        return AESGCM(self.encryption)

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, None)

    def open(self, sealed: bytes | memoryview, what: str) -> bytes:
        """Decrypt and authenticate; ``what`` names the object in the error."""
        if len(sealed) < OVERHEAD:
            raise CorruptObject(what, f"{len(sealed)} bytes is too short to be sealed data")
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], None)
        except InvalidTag:
            raise CorruptObject(what, "authentication failed (damaged or tampered)") from None

    def blob_id(self, plaintext: bytes | memoryview) -> bytes:
        """Keyed BLAKE3, so that ids do not reveal whether a repository holds known content."""
        return blake3.blake3(plaintext, key=self.id_key).digest()


def content_hash(data: bytes | memoryview) -> str:
    """Unkeyed BLAKE3 of stored bytes: the name of a pack, index, snapshot or key object."""
    return blake3.blake3(data).hexdigest()
