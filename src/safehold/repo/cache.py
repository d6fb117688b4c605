"""A local cache of a remote repository's index and snapshot documents.

Opening a repository on object storage reads every index document, and listing snapshots
reads every snapshot document: thousands of GETs per command. Both kinds are immutable
and named by the BLAKE3 of their bytes, so a copy on local disk is checked by its name
alone and never goes stale; only deletions (prune, forget) must be mirrored, which each
listing of the store does. The cache is an optimisation: any error reading or writing it
falls back to the store, and deleting it loses nothing.

Layout: ``<cache dir>/<repository id>/<kind>/<object id>``, the bytes as on the store
(still encrypted). The cache dir is ``$SAFEHOLD_CACHE_DIR``, else
``$XDG_CACHE_HOME/safehold``, else ``~/.cache/safehold``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from safehold.repo.crypto import content_hash

__all__ = ["CACHED_KINDS", "DocumentCache", "default_cache_dir", "tagged_cache_dir"]

CACHED_KINDS = frozenset({"index", "snapshots"})
TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# safehold cache (see bford.info/cachedir)\n"


def default_cache_dir() -> Path:
    if explicit := os.environ.get("SAFEHOLD_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "safehold"


def tagged_cache_dir(base: Path | None = None) -> Path:
    """The cache dir (default: ``default_cache_dir``), made if it can be, and tagged so
    that backup tools skip it (bford.info/cachedir); errors are left to its users."""
    base = base or default_cache_dir()
    with contextlib.suppress(OSError):
        base.mkdir(parents=True, exist_ok=True)
        tag = base / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text(TAG)
    return base


class DocumentCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_repository(cls, repo_id: str, base: Path | None = None) -> DocumentCache:
        return cls(tagged_cache_dir(base) / repo_id)

    def get(self, kind: str, object_id: str) -> bytes | None:
        """The cached bytes, if present and whole (their hash is their name)."""
        path = self.root / kind / object_id
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if content_hash(data) != object_id:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return data

    def put(self, kind: str, object_id: str, data: bytes) -> None:
        directory = self.root / kind
        tmp = directory / f".{object_id}.{os.getpid()}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(directory / object_id)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def keep_only(self, kind: str, object_ids: set[str]) -> None:
        """Drop what the store no longer has (pruned indexes, forgotten snapshots)."""
        try:
            names = os.listdir(self.root / kind)
        except OSError:
            return
        for name in names:
            if name not in object_ids and not name.startswith("."):
                with contextlib.suppress(OSError):
                    (self.root / kind / name).unlink()
