"""Object stores: where a repository's bytes live."""

from __future__ import annotations

from safehold.errors import InvalidArgument
from safehold.storage.base import ObjectInfo, ObjectStore
from safehold.storage.local import LocalStore
from safehold.storage.memory import MemoryStore

__all__ = ["LocalStore", "MemoryStore", "ObjectInfo", "ObjectStore", "open_store"]


def open_store(location: str) -> ObjectStore:
    """The store for a repository location: a local path, ``local:PATH`` or ``s3://…``."""
    if location.startswith("local:"):
        return LocalStore(location.removeprefix("local:"))
    if location.startswith("s3://"):
        from safehold.storage.s3 import S3Store  # obstore loads only for S3 repositories

        return S3Store(location)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise InvalidArgument(f"repository location scheme {scheme}:// is not supported yet")
    return LocalStore(location)
