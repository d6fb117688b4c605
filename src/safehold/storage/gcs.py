"""A repository in a Google Cloud Storage bucket, through obstore.

Location: ``gs://BUCKET[/PREFIX]`` plus the options every cloud store takes (cloud.py).
Credentials, as obstore finds them: ``GOOGLE_APPLICATION_CREDENTIALS`` or
``GOOGLE_SERVICE_ACCOUNT`` / ``GOOGLE_SERVICE_ACCOUNT_PATH`` (a service account key file),
``GOOGLE_SERVICE_ACCOUNT_KEY`` (its JSON), gcloud's application default credentials
(``~/.config/gcloud/application_default_credentials.json``), else the metadata server of
a Google Cloud VM. With none of these, the first request fails with one line saying so.

There is no GCS emulator on the test machines: this module is tested for its
configuration and error messages only (docs/stores/gcs.md). Create-if-absent is a PUT with
``x-goog-if-generation-match: 0`` (obstore ``mode="create"``). obstore cannot create
buckets, and safehold does not either: ``create`` says how.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import obstore.exceptions as obs_errors
import obstore.store

from safehold.errors import StoreError
from safehold.storage.cloud import NO_RETRIES, ObstoreStore, Tuning, first_line, split_location

__all__ = ["GCSLocation", "GCSStore"]

_KEY_FILE_VARS = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
)
_CREDENTIAL_ERRORS = ("credential error", "token request", "error performing token")
NO_CREDENTIALS = (
    "no usable Google Cloud credentials for {0}: set GOOGLE_APPLICATION_CREDENTIALS to a"
    " service account key file, run `gcloud auth application-default login`, or run on a"
    " Google Cloud VM with a service account ({1})"
)


@dataclass(frozen=True, slots=True)
class GCSLocation:
    bucket: str
    prefix: str
    tuning: Tuning = field(default=Tuning(), compare=False)

    @classmethod
    def parse(cls, location: str) -> GCSLocation:
        bucket, prefix, query = split_location(location, "gs", frozenset())
        return cls(bucket, prefix, Tuning.from_query(query, location))


class GCSStore(ObstoreStore):
    """Objects under ``PREFIX/`` in a GCS bucket."""

    root_kind = "bucket"
    missing_root_codes = ("NoSuchBucket",)
    credentials_hint = (
        "check the credentials (GOOGLE_APPLICATION_CREDENTIALS) and that the service"
        " account has roles/storage.objectAdmin on the bucket"
    )

    def __init__(self, location: str, *, connections: int | None = None) -> None:
        w = GCSLocation.parse(location)
        tuning = w.tuning if connections is None else replace(w.tuning, connections=connections)
        self._setup(location, f"gs://{w.bucket}/{w.prefix}".rstrip("/"), tuning, w.bucket)
        self.gcs = w
        for name in _KEY_FILE_VARS:
            path = os.environ.get(name)
            if path and not Path(path).is_file():
                raise StoreError(
                    f"{name} names {path}, which is not a file: cannot open {self.where}"
                )
        try:
            self._store = obstore.store.GCSStore(
                w.bucket,
                prefix=w.prefix or None,
                client_options=tuning.client_options(allow_http=False),
                retry_config=NO_RETRIES,
            )
        except (obs_errors.BaseError, ValueError) as exc:
            if any(hint in str(exc).lower() for hint in (*_CREDENTIAL_ERRORS, "service account")):
                raise StoreError(NO_CREDENTIALS.format(self.where, first_line(exc))) from exc
            raise StoreError(f"cannot open {location}: {first_line(exc)}") from exc

    def create(self) -> None:
        if self.exists():
            return
        raise StoreError(
            f"bucket {self.gcs.bucket} does not exist; safehold does not create GCS buckets:"
            f" create it (gcloud storage buckets create gs://{self.gcs.bucket}"
            " --location=REGION --uniform-bucket-level-access), then run init again"
        )

    def _error(self, exc: BaseException, action: str, key: str) -> StoreError:
        text = str(exc).lower()
        if any(hint in text for hint in _CREDENTIAL_ERRORS):
            return StoreError(NO_CREDENTIALS.format(self.where, first_line(exc)))
        return super()._error(exc, action, key)
