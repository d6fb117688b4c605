"""Key files: the master key wrapped by a key derived from a password.

A key file is plain JSON (it must be readable before any key is known): the KDF and its
parameters, a salt, and ``data``, the master key sealed with the derived key. Several key
files may wrap the same master key, one per password. ``kind`` leaves room for key types
other than "password" (a write-only key) without a new format.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2.low_level import Type, hash_secret_raw

from safehold.errors import CorruptObject
from safehold.repo.crypto import MasterKey

__all__ = ["DEFAULT_KDF", "KdfParams", "KeyFile", "make_key_file", "unwrap"]

KEY_VERSION = 1


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: ``memory`` in KiB, ``iterations`` passes, ``parallelism`` lanes."""

    memory: int = 65536
    iterations: int = 3
    parallelism: int = 2

    def derive(self, password: bytes, salt: bytes) -> bytes:
        return hash_secret_raw(
            password,
            salt,
            time_cost=self.iterations,
            memory_cost=self.memory,
            parallelism=self.parallelism,
            hash_len=32,
            type=Type.ID,
        )


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True)
class KeyFile:
    kdf: KdfParams
    salt: bytes
    sealed_master: bytes
    created: str
    hostname: str
    username: str
    kind: str = "password"

    def to_bytes(self) -> bytes:
        doc = {
            "version": KEY_VERSION,
            "kind": self.kind,
            "kdf": "argon2id",
            "kdf_params": {
                "memory_kib": self.kdf.memory,
                "iterations": self.kdf.iterations,
                "parallelism": self.kdf.parallelism,
            },
            "salt": base64.b64encode(self.salt).decode(),
            "data": base64.b64encode(self.sealed_master).decode(),
            "created": self.created,
            "hostname": self.hostname,
            "username": self.username,
        }
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, what: str) -> KeyFile:
        try:
            doc = json.loads(raw)
            if doc["version"] != KEY_VERSION or doc["kdf"] != "argon2id":
                raise CorruptObject(what, f"unsupported key version {doc['version']}")
            params = doc["kdf_params"]
            return cls(
                kdf=KdfParams(params["memory_kib"], params["iterations"], params["parallelism"]),
                salt=base64.b64decode(doc["salt"]),
                sealed_master=base64.b64decode(doc["data"]),
                created=doc["created"],
                hostname=doc.get("hostname", ""),
                username=doc.get("username", ""),
                kind=doc.get("kind", "password"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObject(what, f"not a key file ({exc})") from None


def make_key_file(master: MasterKey, password: bytes, kdf: KdfParams) -> KeyFile:
    salt = os.urandom(16)
    wrapping = MasterKey(kdf.derive(password, salt), b"")
    payload = json.dumps(
        {
            "encryption": base64.b64encode(master.encryption).decode(),
            "id_key": base64.b64encode(master.id_key).decode(),
        }
    ).encode()
    return KeyFile(
        kdf=kdf,
        salt=salt,
        sealed_master=wrapping.seal(payload),
        created=datetime.now(UTC).isoformat(),
        hostname=socket.gethostname(),
        username=_username(),
    )


def unwrap(key_file: KeyFile, password: bytes) -> MasterKey | None:
    """The master key, or None when the password does not open this key file."""
    wrapping = MasterKey(key_file.kdf.derive(password, key_file.salt), b"")
    try:
        payload = wrapping.open(key_file.sealed_master, "key file")
    except CorruptObject:
        return None
    doc = json.loads(payload)
    return MasterKey(base64.b64decode(doc["encryption"]), base64.b64decode(doc["id_key"]))


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
