"""Object stores: where a repository's bytes live."""

from __future__ import annotations

from safehold.errors import InvalidArgument
from safehold.storage.base import ObjectInfo, ObjectStore
from safehold.storage.local import LocalStore
from safehold.storage.memory import MemoryStore

__all__ = ["LocalStore", "MemoryStore", "ObjectInfo", "ObjectStore", "open_store"]


def open_store(location: str, connections: int | None = None) -> ObjectStore:
    """The store for a repository location: a local path, ``local:PATH``, ``s3://…``,
    ``az://…`` or ``gs://…``.

    ``connections`` (the global ``--connections``) bounds parallel requests: the HTTP
    connection pool of a cloud store and the pack uploads of a backup (``BlobWriter``
    reads ``store.connections``). None keeps the store's default.
    """
    if connections is not None and connections < 1:
        raise InvalidArgument("--connections must be at least 1")
    scheme = location.split("://", 1)[0] if "://" in location else ""
    # obstore (and boto3, azure) load only for the stores that need them
    if scheme == "s3":
        from safehold.storage.s3 import S3Store

        return S3Store(location, connections=connections)
    if scheme == "az":
        from safehold.storage.azure import AzureStore

        return AzureStore(location, connections=connections)
    if scheme == "gs":
        from safehold.storage.gcs import GCSStore

        return GCSStore(location, connections=connections)
    if scheme:
        raise InvalidArgument(
            f"repository location scheme {scheme}:// is not supported"
            " (use a path, s3://, az:// or gs://)"
        )
    path = location.removeprefix("local:")
    return LocalStore(path, connections=connections)
