"""What the object stores behind obstore (S3, Azure Blob, GCS) have in common.

Each request runs through ``RetryPolicy`` (retry.py); obstore's own retries are off. Errors
are turned into the storage contract's: ``NotFound``, ``AlreadyExists``,
``TransientStoreError`` (retried), ``StoreError`` (one clear line, naming the store).

Location options shared by every cloud store, in the query string:
``timeout=SECONDS`` (one request, default 120), ``retries=N`` (after the first try,
default 5), ``connections=N`` (parallel requests; the global ``--connections`` sets it).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import obstore
import obstore.exceptions as obs_errors

from safehold.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    StoreError,
    StoreUnreachable,
    TransientStoreError,
)
from safehold.storage.base import ObjectInfo
from safehold.storage.retry import DEFAULT_ATTEMPTS, RetryPolicy

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

__all__ = [
    "COMMON_OPTIONS",
    "DEFAULT_CONNECTIONS",
    "MULTIPART_THRESHOLD",
    "ObstoreStore",
    "Tuning",
    "split_location",
]

T = TypeVar("T")

# Measured (docs/stores/s3.md): backup of 1 GiB to a local SeaweedFS with 1/2/4/8 uploads.
DEFAULT_CONNECTIONS = 4
# Objects up to this size go in one PUT (one request to pay for, one atomic write, and the
# only way a conditional create works); larger ones in multipart uploads of PART_SIZE parts.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 120.0
COMMON_OPTIONS = frozenset({"timeout", "retries", "connections"})

_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_CONNECTION_HINTS = (
    "error sending request",
    "connection",
    "timed out",
    "timeout",
    "broken pipe",
    "reset by peer",
    "incomplete message",
    "error decoding response body",
)
_ENDPOINT = re.compile(r"\b(https?://[^/\s?,)]+)")
# What a failed connection looked like, in the client's debug text → in words
_UNREACHABLE_REASONS = (
    ("ConnectionRefused", "connection refused"),
    ("dns error", "host name not found"),
    ("TimedOut", "connection timed out"),
    ("ConnectionReset", "connection reset"),
    ("certificate", "TLS certificate not accepted"),
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Tuning:
    """How hard to try and how wide to go: from the location's query, or the defaults."""

    connections: int = DEFAULT_CONNECTIONS
    timeout: float = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS

    @classmethod
    def from_query(cls, query: dict[str, str], location: str) -> Tuning:
        def number(name: str, default: float, low: float, kind: type = int) -> Any:
            if name not in query:
                return default
            try:
                value = kind(query[name])
            except ValueError:
                value = None
            if value is None or value < low:
                raise InvalidArgument(f"{name} must be a number of at least {low} in {location!r}")
            return value

        return cls(
            connections=number("connections", DEFAULT_CONNECTIONS, 1),
            timeout=number("timeout", DEFAULT_TIMEOUT, 0.1, float),
            attempts=number("retries", DEFAULT_ATTEMPTS - 1, 0) + 1,
        )

    def client_options(self, allow_http: bool) -> ClientConfig:
        options: ClientConfig = {
            "connect_timeout": timedelta(seconds=min(5.0, self.timeout)),
            "timeout": timedelta(seconds=self.timeout),
            "pool_max_idle_per_host": str(self.connections),
        }
        if allow_http:
            options["allow_http"] = True
        return options


NO_RETRIES: RetryConfig = {"max_retries": 0}


def split_location(
    location: str, scheme: str, options: frozenset[str]
) -> tuple[str, str, dict[str, str]]:
    """(bucket or container, prefix, query options) of ``scheme://NAME/PREFIX?…``."""
    parts = urlsplit(location)
    if parts.scheme != scheme or not parts.netloc:
        raise InvalidArgument(f"not a {scheme}:// location ({scheme}://NAME/PREFIX): {location!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - options - COMMON_OPTIONS
    if unknown:
        raise InvalidArgument(
            f"unknown option(s) {', '.join(sorted(unknown))} in location {location!r}"
        )
    return parts.netloc, parts.path.strip("/"), query


def flag(query: dict[str, str], name: str, location: str) -> bool | None:
    value = query.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value == "":
        return None
    raise InvalidArgument(f"{name} must be true or false in {location!r}")


class ObstoreStore:
    """Objects under a prefix of a bucket or container, through an obstore store.

    Subclasses set ``_store`` (the obstore store), ``where`` (a short name for messages)
    and the class attributes below, and implement ``create``.
    """

    root_kind = "bucket"
    missing_root_codes: tuple[str, ...] = ("NoSuchBucket",)
    credentials_hint = "check the credentials"

    location: str
    where: str
    connections: int
    _store: Any

    def _setup(self, location: str, where: str, tuning: Tuning, root_name: str) -> None:
        self.location = location
        self.where = where
        self.tuning = tuning
        self.connections = tuning.connections
        self.root_name = root_name
        self.retry = RetryPolicy(attempts=tuning.attempts)
        # at most ``connections`` requests at once, whoever asks (restic's -o s3.connections):
        # a restore's many threads queue here instead of opening a connection each
        self._slots = threading.BoundedSemaphore(tuning.connections)

    def _call(self, action: str, key: str, call: Callable[[int], T]) -> T:
        return self.retry.run(self.where, action, key, call)

    # ---- the bucket or container --------------------------------------------------------

    def exists(self) -> bool:
        def attempt(_: int) -> bool:
            try:
                with self._slots:
                    next(iter(obstore.list(self._store, chunk_size=1)), None)
            except (obs_errors.BaseError, OSError, ValueError) as exc:
                if self._missing_root(exc):
                    return False
                raise self._error(exc, "list", "") from exc
            return True

        return self._call("list", "", attempt)

    def create(self) -> None:
        """Create the bucket or container; each store knows how (or says it cannot)."""
        raise NotImplementedError

    # ---- objects ------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        size = len(data)

        def attempt(n: int) -> None:
            try:
                with self._slots:
                    if if_absent:
                        obstore.put(self._store, key, data, mode="create")
                    else:
                        obstore.put(
                            self._store,
                            key,
                            data,
                            use_multipart=size > MULTIPART_THRESHOLD,
                            chunk_size=PART_SIZE,
                            max_concurrency=4,
                        )
            except (obs_errors.AlreadyExistsError, obs_errors.PreconditionError) as exc:
                if not if_absent:
                    raise self._error(exc, "write", key) from exc
                # A retried create meets the object its own earlier try made, whose reply was
                # lost (the If-None-Match race): the same bytes there mean that try worked.
                if n > 1 and self._holds(key, data):
                    return
                raise AlreadyExists(key) from None
            except (obs_errors.BaseError, OSError, ValueError) as exc:
                raise self._error(exc, "write", key) from exc

        self._call("write", key, attempt)

    def _holds(self, key: str, data: bytes | memoryview) -> bool:
        try:
            return self.get(key) == bytes(data)
        except NotFound:
            return False

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        def attempt(_: int) -> bytes:
            try:
                if byte_range is None:
                    with self._slots:
                        return bytes(obstore.get(self._store, key).bytes())
                offset, length = byte_range
                if length <= 0:
                    self.stat(key)
                    return b""
                with self._slots:
                    return bytes(obstore.get_range(self._store, key, start=offset, length=length))
            except (obs_errors.BaseError, OSError, ValueError) as exc:
                if _past_the_end(exc):
                    self.stat(key)
                    return b""
                raise self._error(exc, "read", key) from exc

        return self._call("read", key, attempt)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # obstore lists whole path segments ("data/ab" but not "data/ab/ab0"): list the
        # segment the prefix is in and keep the keys that start with it. A listing is read
        # whole inside one attempt, so a retry never yields a key twice.
        directory = prefix.rpartition("/")[0]

        def attempt(_: int) -> list[ObjectInfo]:
            found = []
            try:
                with self._slots:
                    for chunk in obstore.list(self._store, directory or None, chunk_size=1000):
                        for meta in chunk:
                            if meta["path"].startswith(prefix):
                                found.append(
                                    ObjectInfo(meta["path"], meta["size"], meta["last_modified"])
                                )
            except (obs_errors.BaseError, OSError, ValueError) as exc:
                raise self._error(exc, "list", prefix) from exc
            return found

        yield from self._call("list", prefix, attempt)

    def stat(self, key: str) -> ObjectInfo:
        def attempt(_: int) -> ObjectInfo:
            try:
                with self._slots:
                    meta = obstore.head(self._store, key)
            except (obs_errors.BaseError, OSError, ValueError) as exc:
                raise self._error(exc, "stat", key) from exc
            return ObjectInfo(key, meta["size"])

        return self._call("stat", key, attempt)

    def delete(self, key: str) -> None:
        self.stat(key)  # S3 deletes a missing object without complaint; the contract does not

        def attempt(n: int) -> None:
            try:
                with self._slots:
                    obstore.delete(self._store, key)
            except FileNotFoundError:
                if n == 1:
                    raise NotFound(key) from None  # a retry meets its own earlier delete
            except (obs_errors.BaseError, OSError, ValueError) as exc:
                raise self._error(exc, "delete", key) from exc

        self._call("delete", key, attempt)

    # ---- errors -------------------------------------------------------------------------

    def _missing_root(self, exc: BaseException) -> bool:
        text = str(exc)
        return any(f"<Code>{code}</Code>" in text for code in self.missing_root_codes)

    @property
    def client(self) -> Any:
        """The obstore store, for callers that need obstore calls this class does not wrap
        (sources/bucket_client.py: object attributes and streaming)."""
        return self._store

    def error(self, exc: BaseException, action: str, key: str) -> StoreError:
        """The typed safehold error for an obstore exception (one line, names the object)."""
        return self._error(exc, action, key)

    def _error(self, exc: BaseException, action: str, key: str) -> StoreError:
        text = str(exc)
        status = _status(exc)
        code = m.group(1) if (m := _CODE.search(text)) else ""
        if self._missing_root(exc):
            return StoreError(
                f"{self.root_kind} {self.root_name} does not exist at {self.where};"
                " `safehold init` creates it"
            )
        if isinstance(exc, FileNotFoundError) or status == 404:
            return NotFound(key)
        if isinstance(exc, obs_errors.AlreadyExistsError):
            return AlreadyExists(key)
        if isinstance(
            exc, obs_errors.PermissionDeniedError | obs_errors.UnauthenticatedError
        ) or status in (401, 403):
            return StoreError(
                f"access denied to {self.where} ({code or status or 'forbidden'}) on {action}"
                f" {key!r}: {self.credentials_hint}"
            )
        if status is None and "kind: Connect" in text:
            return StoreUnreachable(*_unreachable(text, self.where))
        detail = f"{action} {key!r}" if key else action
        detail = f"{detail}: {code or first_line(exc)}"
        if (status is not None and (status >= 500 or status in (408, 429))) or (
            status is None and any(h in text.lower() for h in _CONNECTION_HINTS)
        ):
            return TransientStoreError(self.where, detail)
        return StoreError(f"{self.where}: cannot {detail}")


def _unreachable(text: str, where: str) -> tuple[str, str]:
    """(the endpoint, why no connection was made) from the client's error text."""
    endpoint = m.group(1) if (m := _ENDPOINT.search(text)) else where
    reason = next((why for hint, why in _UNREACHABLE_REASONS if hint in text), "no connection")
    return endpoint, reason


def _past_the_end(exc: BaseException) -> bool:
    """A range that starts at or past the end: S3 answers 416; obstore's Azure client
    checks the answer itself and says "Wanted range starting at …"."""
    return _status(exc) == 416 or "wanted range starting at" in str(exc).lower()


def _status(exc: BaseException) -> int | None:
    m = _STATUS.search(str(exc))
    return int(m.group(1)) if m else None


def first_line(exc: BaseException) -> str:
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line.split(": <?xml", 1)[0]
