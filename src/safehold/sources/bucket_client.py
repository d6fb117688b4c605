"""The live bucket a bucket backup reads and a bucket restore writes, through obstore.

This is not a repository store: a repository needs put/get/list of its own objects, a
bucket source needs each object's ETag, last-modified time, content type and user
metadata. ``open_bucket`` opens the repository store for the same location
(``s3://BUCKET/PREFIX?endpoint=…&region=…&path_style=…``, ``az://CONTAINER/PREFIX?…``,
``gs://BUCKET/PREFIX``), which parses it, finds the credentials, retries transient
failures and names errors, and reads and writes objects with that store's obstore client
(``client``) and error mapping (``error()``).

Keys are relative to the location's prefix. obstore (Rust's object_store) addresses
objects by a normalised path: it cannot read or write keys with empty segments (``a//b``,
a leading or trailing ``/``), ``.`` or ``..`` segments, or ASCII control characters.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol, TypeVar, cast
from urllib.parse import urlsplit

import obstore
import obstore.exceptions as obs_errors

from safehold.errors import AlreadyExists, InvalidArgument, StoreError
from safehold.storage import open_store

__all__ = [
    "BUCKET_SCHEMES",
    "Bucket",
    "FetchedObject",
    "ListedObject",
    "ObstoreBucket",
    "addressable",
    "is_bucket_location",
    "open_bucket",
]

T = TypeVar("T")

BUCKET_SCHEMES = ("s3://", "gs://", "az://")
SMALL_READ = 1 << 20  # a larger object is streamed in pieces of about this size
PUT_PART = 8 << 20
PUT_CONCURRENCY = 4
_OBSTORE_ERRORS = (obs_errors.BaseError, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object as a listing (or a GET) saw it."""

    key: str
    size: int
    etag: str
    last_modified_ns: int


@dataclass
class FetchedObject:
    """An object being read: what the GET saw (the version actually served) and its bytes."""

    info: ListedObject
    attributes: dict[str, str]
    stream: BinaryIO


class Bucket(Protocol):
    """A bucket (or a prefix of one) holding live objects."""

    location: str
    """``scheme://bucket/prefix``, without options: how snapshots name the source."""
    bucket: str
    prefix: str
    endpoint: str
    """Where the bucket is ("" for the provider's default): two servers, two sources."""

    def list(self) -> Iterator[ListedObject]: ...

    def get(self, key: str) -> FetchedObject:
        """The object's current version; ``NotFound`` if it is gone."""
        ...

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        attributes: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> None:
        """Write (or replace) an object; ``AlreadyExists`` with ``if_absent`` if one is there."""
        ...

    def create(self) -> None:
        """Create the bucket (container) when it is missing."""
        ...


def addressable(key: str) -> bool:
    """Whether obstore reads and writes ``key`` as it is (it normalises other keys)."""
    return all(p not in ("", ".", "..") for p in key.split("/")) and not any(
        ord(c) < 32 or c == "\x7f" for c in key
    )


def is_bucket_location(text: str) -> bool:
    return text.startswith(BUCKET_SCHEMES)


def open_bucket(location: str) -> ObstoreBucket:
    if not is_bucket_location(location):
        raise InvalidArgument(f"not a bucket location (s3://, gs:// or az://): {location!r}")
    return ObstoreBucket(open_store(location))


class _ChunkReader(io.RawIOBase):
    """A file-like view of obstore's byte stream, for the chunker's ``readinto``."""

    def __init__(
        self, pieces: Iterator[Any], error: Callable[[BaseException, str, str], Exception], key: str
    ) -> None:
        self._pieces = pieces
        self._buffer = memoryview(b"")
        self._error = error
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                piece = next(self._pieces, None)
            except _OBSTORE_ERRORS as exc:  # the connection broke in the middle
                raise self._error(exc, "read", self._key) from exc
            if piece is None:
                return 0
            self._buffer = memoryview(bytes(piece))
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class ObstoreBucket:
    """A bucket through the obstore client of a repository store (storage/cloud.py).

    Thread-safe: one client is shared by the worker threads.
    """

    def __init__(self, store: Any) -> None:
        client = getattr(store, "client", None)  # ObstoreStore's obstore client
        if client is None:
            raise InvalidArgument(f"{store.location} is not a bucket location")
        self._repo_store = store
        self._store = client
        parts = urlsplit(store.location)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.location = f"{parts.scheme}://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint = _endpoint(store)

    # ---- reading ------------------------------------------------------------------------

    def list(self) -> Iterator[ListedObject]:
        """Read whole inside one attempt, so that a retry never yields a key twice."""

        def attempt(_: int) -> list[ListedObject]:
            try:
                return [
                    _listed(meta)
                    for chunk in obstore.list(self._store, chunk_size=1000)
                    for meta in chunk
                ]
            except _OBSTORE_ERRORS as exc:
                raise self._error(exc, "list", "") from exc

        yield from self._retried("list", "", attempt)

    def get(self, key: str) -> FetchedObject:
        """Starting the GET is retried; a failure in the middle of a large object is not."""

        def attempt(_: int) -> FetchedObject:
            try:
                result = obstore.get(self._store, key)
                info = _listed(result.meta)
                attributes = {str(k): str(v) for k, v in result.attributes.items()}
                if info.size <= SMALL_READ:
                    stream: BinaryIO = io.BytesIO(bytes(result.bytes()))
                else:
                    pieces = iter(result.stream(min_chunk_size=SMALL_READ))
                    stream = cast(BinaryIO, _ChunkReader(pieces, self._error, key))
            except _OBSTORE_ERRORS as exc:
                raise self._error(exc, "read", key) from exc
            return FetchedObject(info, attributes, stream)

        return self._retried("read", key, attempt)

    # ---- writing ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        attributes: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> None:
        """Retried when ``data`` is bytes; an iterable (a large object) goes up once."""
        if not addressable(key):
            raise StoreError(
                f"{self.location}: key {key!r} cannot be written exactly through obstore "
                "(an empty, '.' or '..' segment, or a control character)"
            )

        def attempt(n: int) -> None:
            try:
                obstore.put(
                    self._store,
                    key,
                    data,
                    attributes=attributes or None,
                    mode="create" if if_absent else "overwrite",
                    chunk_size=PUT_PART,
                    max_concurrency=PUT_CONCURRENCY,
                )
            except (obs_errors.AlreadyExistsError, obs_errors.PreconditionError):
                if n > 1:  # our own earlier try may have landed: the reply was lost
                    return
                raise AlreadyExists(key) from None
            except _OBSTORE_ERRORS as exc:
                raise self._error(exc, "write", key) from exc

        if isinstance(data, bytes):
            self._retried("write", key, attempt)
        else:
            attempt(1)

    def create(self) -> None:
        self._repo_store.create()

    # ---- errors -------------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str, key: str) -> StoreError:
        if isinstance(exc, ValueError) and "path" in str(exc).lower():
            return StoreError(f"{self.location}: key {key!r} cannot be addressed by obstore")
        error: StoreError = self._repo_store.error(exc, action, key)
        if "does not exist" in str(error):  # not the repository's hint to run `init`
            store = self._repo_store
            return StoreError(
                f"{store.root_kind} {store.root_name} does not exist at {store.where}"
            )
        return error

    def _retried(self, action: str, key: str, call: Callable[[int], T]) -> T:
        result: T = self._repo_store.retry.run(self._repo_store.where, action, key, call)
        return result


def _endpoint(store: Any) -> str:
    """Where the bucket lives, so that two servers' buckets of one name are two sources."""
    s3 = getattr(store, "s3", None)
    if s3 is not None:
        return str(s3.endpoint or "")
    azure = getattr(store, "azure", None)
    if azure is not None:
        return str(azure.endpoint or f"account {azure.account}")
    return ""


def _listed(meta: Any) -> ListedObject:
    modified: datetime = meta["last_modified"]
    ns = int(modified.timestamp()) * 1_000_000_000 + modified.microsecond * 1000
    etag = str(meta["e_tag"] or "")
    if etag and not etag.startswith(('"', 'W/"')):
        etag = f'"{etag}"'  # Azure lists ETags bare but sends them quoted on a GET
    return ListedObject(str(meta["path"]), int(meta["size"]), etag, ns)
