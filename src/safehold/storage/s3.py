"""A repository in an S3 (or S3-compatible) bucket, through obstore.

Location: ``s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&path_style=true]``.
Without ``endpoint``/``region`` in the query, ``AWS_ENDPOINT_URL`` and ``AWS_REGION``
(then ``AWS_DEFAULT_REGION``, then us-east-1) apply; path-style addressing is the default
when an endpoint is given (MinIO, SeaweedFS, Ceph), virtual-hosted style on AWS itself.
Credentials come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), which obstore reads itself.

obstore cannot create buckets; ``create`` uses boto3 for that one call (DESIGN.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import obstore
import obstore.exceptions as obs_errors
import obstore.store

from safehold.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    StoreError,
    TransientStoreError,
)
from safehold.storage.base import ObjectInfo

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["S3Location", "S3Store"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_CONNECTION_HINTS = ("error sending request", "connection", "timed out", "timeout")


@dataclass(frozen=True, slots=True)
class S3Location:
    """A parsed ``s3://`` location."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    path_style: bool

    @classmethod
    def parse(cls, location: str) -> S3Location:
        parts = urlsplit(location)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidArgument(f"not an S3 location (s3://BUCKET/PREFIX): {location!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - {"endpoint", "region", "path_style"}
        if unknown:
            raise InvalidArgument(
                f"unknown option(s) {', '.join(sorted(unknown))} in S3 location {location!r}"
            )
        endpoint = query.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = (
            query.get("region")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        style = query.get("path_style", "").lower()
        if style in _TRUE:
            path_style = True
        elif style in _FALSE:
            path_style = False
        elif style == "":
            path_style = endpoint is not None
        else:
            raise InvalidArgument(f"path_style must be true or false in {location!r}")
        return cls(parts.netloc, parts.path.strip("/"), endpoint, region, path_style)


class S3Store:
    """Objects under ``PREFIX/`` in a bucket; ``put(if_absent=True)`` is a conditional PUT."""

    def __init__(
        self,
        location: str,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.location = location
        self.where = S3Location.parse(location)
        self._credentials: dict[str, str] = {}
        if access_key_id is not None and secret_access_key is not None:
            self._credentials = {
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
            }
        w = self.where
        config: dict[str, Any] = {
            "region": w.region,
            "virtual_hosted_style_request": not w.path_style,
            **self._credentials,
        }
        if w.endpoint:
            config["endpoint"] = w.endpoint
        client: ClientConfig = {"connect_timeout": timedelta(seconds=5)}
        if w.endpoint and w.endpoint.startswith("http://"):
            client["allow_http"] = True
        retry: RetryConfig = {"max_retries": 4, "retry_timeout": timedelta(seconds=60)}
        try:
            self._store = obstore.store.S3Store(
                w.bucket,
                prefix=w.prefix or None,
                config=config,  # type: ignore[arg-type]
                client_options=client,
                retry_config=retry,
            )
        except (obs_errors.BaseError, ValueError) as exc:
            raise StoreError(f"cannot open {location}: {_first_line(exc)}") from exc

    # ---- the bucket ---------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            stream = obstore.list(self._store, chunk_size=1)
            next(iter(stream), None)
        except (obs_errors.BaseError, OSError, ValueError) as exc:
            if "NoSuchBucket" in str(exc):
                return False
            raise self._error(exc, "list", "") from exc
        return True

    def create(self) -> None:
        if self.exists():
            return
        import boto3
        import botocore.config
        import botocore.exceptions

        w = self.where
        kwargs: dict[str, Any] = {"region_name": w.region}
        if w.endpoint:
            kwargs["endpoint_url"] = w.endpoint
        if self._credentials:
            kwargs["aws_access_key_id"] = self._credentials["access_key_id"]
            kwargs["aws_secret_access_key"] = self._credentials["secret_access_key"]
        style = "path" if w.path_style else "virtual"
        config = botocore.config.Config(s3={"addressing_style": style}, retries={"max_attempts": 4})
        request: dict[str, Any] = {"Bucket": w.bucket}
        if w.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": w.region}
        try:
            boto3.client("s3", config=config, **kwargs).create_bucket(**request)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists") and self.exists():
                return
            raise StoreError(f"cannot create bucket {w.bucket} at {self._where()}: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"cannot create bucket {w.bucket} at {self._where()}: {exc}") from exc

    # ---- objects ------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        try:
            obstore.put(self._store, key, data, mode="create" if if_absent else "overwrite")
        except (obs_errors.BaseError, OSError, ValueError) as exc:
            raise self._error(exc, "write", key) from exc

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        try:
            if byte_range is None:
                return bytes(obstore.get(self._store, key).bytes())
            offset, length = byte_range
            if length <= 0:
                self.stat(key)
                return b""
            return bytes(obstore.get_range(self._store, key, start=offset, length=length))
        except (obs_errors.BaseError, OSError, ValueError) as exc:
            if _status(exc) == 416:  # the range starts at or past the end: nothing there
                self.stat(key)
                return b""
            raise self._error(exc, "read", key) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # obstore lists whole path segments ("data/ab" but not "data/ab/ab0"): list the
        # segment the prefix is in and keep the keys that start with it.
        directory = prefix.rpartition("/")[0]
        try:
            for chunk in obstore.list(self._store, directory or None, chunk_size=1000):
                for meta in chunk:
                    if meta["path"].startswith(prefix):
                        yield ObjectInfo(meta["path"], meta["size"])
        except (obs_errors.BaseError, OSError, ValueError) as exc:
            raise self._error(exc, "list", prefix) from exc

    def stat(self, key: str) -> ObjectInfo:
        try:
            meta = obstore.head(self._store, key)
        except (obs_errors.BaseError, OSError, ValueError) as exc:
            raise self._error(exc, "stat", key) from exc
        return ObjectInfo(key, meta["size"])

    def delete(self, key: str) -> None:
        self.stat(key)  # S3 deletes a missing object without complaint; the contract does not
        try:
            obstore.delete(self._store, key)
        except (obs_errors.BaseError, OSError, ValueError) as exc:
            raise self._error(exc, "delete", key) from exc

    # ---- errors -------------------------------------------------------------------------

    def _where(self) -> str:
        w = self.where
        base = f"s3://{w.bucket}/{w.prefix}".rstrip("/")
        return f"{base} ({w.endpoint})" if w.endpoint else base

    def _error(self, exc: BaseException, action: str, key: str) -> StoreError:
        text = str(exc)
        status = _status(exc)
        code = m.group(1) if (m := _CODE.search(text)) else ""
        where = self._where()
        if code == "NoSuchBucket":
            return StoreError(f"bucket {self.where.bucket} does not exist at {where}")
        if isinstance(exc, FileNotFoundError) or status == 404:
            return NotFound(key)
        if isinstance(exc, obs_errors.AlreadyExistsError):
            return AlreadyExists(key)
        if isinstance(
            exc, obs_errors.PermissionDeniedError | obs_errors.UnauthenticatedError
        ) or status in (401, 403):
            return StoreError(
                f"access denied to {where} ({code or status or 'forbidden'}) on {action} {key!r}:"
                " check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            )
        detail = f"{action} {key!r}: {code or _first_line(exc)}"
        if (status is not None and (status >= 500 or status == 429)) or (
            status is None and any(h in text.lower() for h in _CONNECTION_HINTS)
        ):
            return TransientStoreError(where, detail)
        return StoreError(f"{where}: cannot {detail}")


def _status(exc: BaseException) -> int | None:
    m = _STATUS.search(str(exc))
    return int(m.group(1)) if m else None


def _first_line(exc: BaseException) -> str:
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line.split(": <?xml", 1)[0]
