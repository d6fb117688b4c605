"""A repository in an S3 (or S3-compatible) bucket, through obstore.

Location: ``s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&path_style=true]`` plus the
options every cloud store takes (cloud.py: ``timeout``, ``retries``, ``connections``).
Without ``endpoint``/``region`` in the query, ``AWS_ENDPOINT_URL`` and ``AWS_REGION``
(then ``AWS_DEFAULT_REGION``, then us-east-1) apply; path-style addressing is the default
when an endpoint is given (MinIO, SeaweedFS, Ceph), virtual-hosted style on AWS itself.
Credentials come from the standard AWS sources: obstore reads the environment, web
identity, ECS and EC2 instance metadata itself; the shared config/credentials files and
``AWS_PROFILE`` it does not read, so when those files exist (and no key is in the
environment) boto3's credential chain provides the credentials.

obstore has no bucket administration; ``create`` and Object Lock use boto3 (DESIGN.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import obstore.exceptions as obs_errors
import obstore.store

from safehold.errors import InvalidArgument, NotFound, StoreError
from safehold.storage.cloud import (
    NO_RETRIES,
    ObstoreStore,
    Tuning,
    first_line,
    flag,
    split_location,
)

__all__ = ["DEFAULT_LOCK_MODE", "ObjectLock", "S3Location", "S3Store"]

# GOVERNANCE: nothing with ordinary permissions can delete or overwrite a locked version;
# an account holding s3:BypassGovernanceRetention can (break-glass). COMPLIANCE would bind
# the root account too, for the whole period, with no way back (docs/stores/s3.md).
DEFAULT_LOCK_MODE = "GOVERNANCE"
_OPTIONS = frozenset({"endpoint", "region", "path_style"})


@dataclass(frozen=True, slots=True)
class S3Location:
    """A parsed ``s3://`` location."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    path_style: bool
    tuning: Tuning = field(default=Tuning(), compare=False)

    @classmethod
    def parse(cls, location: str) -> S3Location:
        bucket, prefix, query = split_location(location, "s3", _OPTIONS)
        endpoint = query.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = (
            query.get("region")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        style = flag(query, "path_style", location)
        path_style = endpoint is not None if style is None else style
        tuning = Tuning.from_query(query, location)
        return cls(bucket, prefix, endpoint, region, path_style, tuning)


class S3Store(ObstoreStore):
    """Objects under ``PREFIX/`` in a bucket; ``put(if_absent=True)`` is a conditional PUT."""

    root_kind = "bucket"
    missing_root_codes = ("NoSuchBucket",)
    credentials_hint = "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"

    def __init__(
        self,
        location: str,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connections: int | None = None,
    ) -> None:
        w = S3Location.parse(location)
        tuning = w.tuning if connections is None else replace(w.tuning, connections=connections)
        self._setup(location, _describe(w), tuning, w.bucket)
        self.s3 = w
        self._credentials: dict[str, str] = {}
        if access_key_id is not None and secret_access_key is not None:
            self._credentials = {
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
            }
        self.checksums = False
        self._open()

    def _open(self) -> None:
        """The obstore store; with ``checksums``, every PUT carries x-amz-checksum-sha256."""
        w = self.s3
        config: dict[str, Any] = {
            "region": w.region,
            "virtual_hosted_style_request": not w.path_style,
            **self._credentials,
        }
        if w.endpoint:
            config["endpoint"] = w.endpoint
        if self.checksums:
            config["checksum_algorithm"] = "sha256"
        allow_http = bool(w.endpoint and w.endpoint.startswith("http://"))
        try:
            self._store = obstore.store.S3Store(
                w.bucket,
                prefix=w.prefix or None,
                config=config,  # type: ignore[arg-type]
                client_options=self.tuning.client_options(allow_http),
                retry_config=NO_RETRIES,
                credential_provider=self._profile_credentials(),
            )
        except (obs_errors.BaseError, ValueError) as exc:
            raise StoreError(f"cannot open {self.location}: {first_line(exc)}") from exc

    def _profile_credentials(self) -> Any:
        """boto3's credential chain when AWS profile files exist and nothing else is set."""
        if self._credentials or os.environ.get("AWS_ACCESS_KEY_ID"):
            return None
        files = (
            os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
            os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
        )
        if not any(os.path.exists(os.path.expanduser(f)) for f in files):
            return None
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider

        return Boto3CredentialProvider(boto3.Session())

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        """As every store; in a bucket with Object Lock, AWS refuses a PUT without a checksum
        header (Content-MD5 or x-amz-checksum-*): then the store turns checksums on and
        tries again, so buckets without Object Lock do not pay for the extra hash."""
        try:
            super().put(key, data, if_absent=if_absent)
        except StoreError as exc:
            if self.checksums or not _wants_checksum(exc):
                raise
            self.checksums = True
            self._open()
            super().put(key, data, if_absent=if_absent)

    # ---- the bucket (boto3: obstore has no bucket administration) -----------------------

    def create(self) -> None:
        if self.exists():
            return
        self._create_bucket(object_lock=False)

    def _client(self) -> Any:
        import boto3
        import botocore.config

        w = self.s3
        kwargs: dict[str, Any] = {"region_name": w.region}
        if w.endpoint:
            kwargs["endpoint_url"] = w.endpoint
        if self._credentials:
            kwargs["aws_access_key_id"] = self._credentials["access_key_id"]
            kwargs["aws_secret_access_key"] = self._credentials["secret_access_key"]
        style = "path" if w.path_style else "virtual"
        config = botocore.config.Config(
            s3={"addressing_style": style},
            retries={"max_attempts": self.tuning.attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=self.tuning.timeout,
        )
        return boto3.client("s3", config=config, **kwargs)

    def _create_bucket(self, object_lock: bool) -> None:
        import botocore.exceptions

        w = self.s3
        request: dict[str, Any] = {"Bucket": w.bucket}
        if w.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": w.region}
        if object_lock:
            request["ObjectLockEnabledForBucket"] = True
        try:
            self._client().create_bucket(**request)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists") and self.exists():
                return
            raise StoreError(f"cannot create bucket {w.bucket} at {self.where}: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"cannot create bucket {w.bucket} at {self.where}: {exc}") from exc

    # ---- Object Lock --------------------------------------------------------------------

    def enable_object_lock(self, days: int, mode: str = DEFAULT_LOCK_MODE) -> None:
        """Make every object written from now on undeletable for ``days`` days.

        A missing bucket is created with Object Lock enabled; an existing bucket must
        already have it (or get it: AWS allows enabling it on a versioned bucket). Then a
        default retention rule applies ``mode`` for ``days`` to every new object version.
        Stores without Object Lock raise ``StoreError`` saying so.
        """
        import botocore.exceptions

        if days < 1:
            raise InvalidArgument("--object-lock-days must be at least 1")
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise InvalidArgument(f"object lock mode must be GOVERNANCE or COMPLIANCE, not {mode}")
        if not self.exists():
            self._create_bucket(object_lock=True)
        rule = {"DefaultRetention": {"Mode": mode, "Days": days}}
        try:
            self._client().put_object_lock_configuration(
                Bucket=self.s3.bucket,
                ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule},
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise StoreError(
                f"the S3 store at {self.where} does not support Object Lock on bucket"
                f" {self.s3.bucket} ({_boto_reason(exc)}); Object Lock must be enabled when a"
                " bucket is created: use a new bucket, or a store that supports it"
            ) from exc
        lock = self.object_lock()
        if lock is None or lock.days != days or lock.mode != mode:
            raise StoreError(
                f"the S3 store at {self.where} accepted but does not report Object Lock on"
                f" bucket {self.s3.bucket}: it does not support it"
            )

    def object_lock(self) -> ObjectLock | None:
        """The bucket's default retention, or None when it has none (one request, boto3)."""
        import botocore.exceptions

        try:
            reply = self._client().get_object_lock_configuration(Bucket=self.s3.bucket)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"):
                return None
            raise StoreError(
                f"cannot read the Object Lock configuration of {self.where}: {_boto_reason(exc)}"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(
                f"cannot read the Object Lock configuration of {self.where}: {exc}"
            ) from exc
        config = reply.get("ObjectLockConfiguration", {})
        retention = config.get("Rule", {}).get("DefaultRetention", {})
        if config.get("ObjectLockEnabled") != "Enabled" or not retention:
            return None
        days = retention.get("Days") or 365 * retention.get("Years", 0)
        return ObjectLock(retention.get("Mode", ""), int(days))

    def retained_until(self, key: str) -> datetime | None:
        """When the Object Lock retention of the object's current version ends (None: not
        locked, or already past). For prune: a delete before then only hides the object
        behind a delete marker; the locked version stays, and stays billed."""
        import botocore.exceptions

        full = f"{self.s3.prefix}/{key}" if self.s3.prefix else key
        try:
            head = self._client().head_object(Bucket=self.s3.bucket, Key=full)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(key) from None
            raise StoreError(f"{self.where}: cannot stat {key!r}: {_boto_reason(exc)}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"{self.where}: cannot stat {key!r}: {exc}") from exc
        until = head.get("ObjectLockRetainUntilDate")
        if not isinstance(until, datetime) or until <= datetime.now(UTC):
            return None
        return until


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """A bucket's default Object Lock retention."""

    mode: str
    days: int


def _describe(w: S3Location) -> str:
    base = f"s3://{w.bucket}/{w.prefix}".rstrip("/")
    return f"{base} ({w.endpoint})" if w.endpoint else base


def _wants_checksum(exc: StoreError) -> bool:
    text = str(exc.__cause__ or exc)
    return "InvalidRequest" in text and ("Content-MD5" in text or "x-amz-checksum" in text)


def _boto_reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
    return str(exc)
