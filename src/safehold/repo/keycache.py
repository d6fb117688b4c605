"""A per-user cache of unlocked master keys, so that commands PostgreSQL runs once per WAL
file (archive_command, restore_command) do not pay the password's Argon2id every time.

Argon2id with the default cost took 0.2 s of CPU per call, more than the rest of a
``pg wal-fetch``; a promotion waits for three or four fetches in a row. The cache holds
the master key of one repository, sealed (AES-256-GCM, as everything else) with a key
derived from the password by keyed BLAKE3 and a random salt: fast, so whoever can read
the file can test guesses of the password quickly, which is why it is written only where
that user alone can read (directory 0700, file 0600, both owned by the user; a file or
directory that is not is ignored, with a warning) and used only when the password itself
sits in a file that user can read (the caller decides). A wrong or changed password
cannot unseal the entry; the caller then derives the key as usual.

An entry is a hint, never trusted on its own: ``Repository.open`` checks that the key
file it came from is still on the store (so a removed or changed password stops working)
and that the key authenticates the repository's config. Entries are named by the BLAKE3
of the config object, so repositories never share one. Layout:
``<cache dir>/keys/<config hash>``, JSON ``{"version", "key_id", "salt", "data"}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import stat
from pathlib import Path

import blake3

from safehold.errors import CorruptObject
from safehold.repo.cache import default_cache_dir, tagged_cache_dir
from safehold.repo.crypto import MasterKey, content_hash

__all__ = ["KeyCache"]

ENTRY_VERSION = 1
KEY_ID = re.compile("[0-9a-f]{64}")
CONTEXT = "safehold 2026 key cache entry v1"


class KeyCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.warnings: list[str] = []  # for the CLI to print: the repo layer does not

    @classmethod
    def default(cls) -> KeyCache:
        return cls(default_cache_dir() / "keys")

    def load(self, raw_config: bytes, password: bytes) -> tuple[MasterKey, str] | None:
        """The cached master key and its key id, or None (no entry, not ours, not this
        password's)."""
        path = self._path(raw_config)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.warnings.append(f"key cache {path} cannot be read ({exc.strerror}); ignored")
            return None
        with os.fdopen(fd, "rb") as f:
            problem = _private_problem(os.fstat(f.fileno())) or self._directory_problem()
            if problem:
                self.warnings.append(f"key cache {path} {problem}; ignored")
                return None
            raw = f.read(4096)
        try:
            doc = json.loads(raw)
            salt = base64.b64decode(doc["salt"])
            sealed = base64.b64decode(doc["data"])
            key_id = str(doc["key_id"])
            if doc["version"] != ENTRY_VERSION or not KEY_ID.fullmatch(key_id):
                return None
            payload = json.loads(_sealing_key(password, salt).open(sealed, "key cache entry"))
            key = MasterKey(
                base64.b64decode(payload["encryption"]), base64.b64decode(payload["id_key"])
            )
        except CorruptObject:  # another password's entry (or damaged): derive as usual
            return None
        except (ValueError, KeyError, TypeError):
            self.warnings.append(f"key cache {path} is not a key cache entry; ignored")
            return None
        return key, key_id

    def save(self, raw_config: bytes, password: bytes, key: MasterKey, key_id: str) -> None:
        """Remember ``key`` after an open that derived it; any error leaves no entry."""
        with contextlib.suppress(OSError):
            tagged_cache_dir(self.root.parent)
            self.root.mkdir(mode=0o700, exist_ok=True)
        if self._directory_problem():
            return
        salt = os.urandom(16)
        payload = json.dumps(
            {
                "encryption": base64.b64encode(key.encryption).decode(),
                "id_key": base64.b64encode(key.id_key).decode(),
            }
        ).encode()
        doc = {
            "version": ENTRY_VERSION,
            "key_id": key_id,
            "salt": base64.b64encode(salt).decode(),
            "data": base64.b64encode(_sealing_key(password, salt).seal(payload)).decode(),
        }
        path = self._path(raw_config)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(doc).encode())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def forget(self, raw_config: bytes) -> None:
        """Drop the entry (its key file is gone from the store)."""
        with contextlib.suppress(OSError):
            self._path(raw_config).unlink()

    def _path(self, raw_config: bytes) -> Path:
        return self.root / content_hash(raw_config)

    def _directory_problem(self) -> str | None:
        try:
            info = os.lstat(self.root)
        except OSError as exc:
            return f"has no usable directory ({exc.strerror})"
        if not stat.S_ISDIR(info.st_mode):
            return f"has no usable directory ({self.root} is not a directory)"
        problem = _private_problem(info)
        return f"is in a directory that {problem}" if problem else None


def _private_problem(info: os.stat_result) -> str | None:
    """Why a cache file or directory may not be trusted: not ours, or open to others."""
    if info.st_uid != os.geteuid():
        return f"is owned by uid {info.st_uid}, not by this user ({os.geteuid()})"
    if info.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _sealing_key(password: bytes, salt: bytes) -> MasterKey:
    material = blake3.blake3(salt + password, derive_key_context=CONTEXT).digest()
    return MasterKey(material, b"")
