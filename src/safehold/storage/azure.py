"""A repository in an Azure Blob Storage container, through obstore.

Location: ``az://CONTAINER[/PREFIX][?account=NAME&endpoint=URL]`` plus the options every
cloud store takes (cloud.py). The account and its credentials come from, in this order:

- the query (``account``, ``endpoint``; never a key: a location is printed and logged);
- ``AZURE_STORAGE_CONNECTION_STRING`` (``AccountName``, ``AccountKey``, ``BlobEndpoint``,
  ``SharedAccessSignature``, or ``UseDevelopmentStorage=true`` for Azurite);
- ``AZURE_STORAGE_ACCOUNT`` / ``AZURE_STORAGE_KEY`` (the az CLI's names) and every
  ``AZURE_STORAGE_*`` / ``AZURE_*`` variable obstore reads itself: ``..._ACCOUNT_NAME``,
  ``..._ACCOUNT_KEY``, ``..._SAS_TOKEN``, ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``/
  ``AZURE_TENANT_ID`` (service principal), ``AZURE_FEDERATED_TOKEN_FILE`` (workload
  identity), and the managed identity of an Azure VM when nothing else is set.

Create-if-absent is a PUT with ``If-None-Match: *`` (409 when the blob exists). obstore
cannot create containers; ``create`` uses azure-storage-blob for that one call, and only
with an account key or a SAS (the ``azure`` extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import obstore.exceptions as obs_errors
import obstore.store

from safehold.errors import InvalidArgument, StoreError
from safehold.storage.cloud import NO_RETRIES, ObstoreStore, Tuning, first_line, split_location

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "AzureLocation", "AzureStore"]

# Azurite's documented development account (public, for the emulator only).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_OPTIONS = frozenset({"account", "endpoint"})


@dataclass(frozen=True, slots=True)
class AzureLocation:
    """A parsed ``az://`` location, with what the environment adds."""

    container: str
    prefix: str
    account: str | None
    endpoint: str | None
    key: str | None = field(default=None, repr=False)
    sas: str | None = field(default=None, repr=False)
    tuning: Tuning = field(default=Tuning(), compare=False)

    @classmethod
    def parse(cls, location: str) -> AzureLocation:
        container, prefix, query = split_location(location, "az", _OPTIONS)
        conn = _connection_string(os.environ.get("AZURE_STORAGE_CONNECTION_STRING", ""))
        if conn.get("usedevelopmentstorage", "").lower() == "true":
            conn.setdefault("accountname", AZURITE_ACCOUNT)
            conn.setdefault("accountkey", AZURITE_KEY)
            conn.setdefault("blobendpoint", f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}")
        account = (
            query.get("account")
            or conn.get("accountname")
            or os.environ.get("AZURE_STORAGE_ACCOUNT")
            or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
        )
        endpoint = query.get("endpoint") or conn.get("blobendpoint")
        key = (
            conn.get("accountkey")
            or os.environ.get("AZURE_STORAGE_KEY")
            or os.environ.get("AZURE_STORAGE_ACCOUNT_KEY")
            or os.environ.get("AZURE_STORAGE_ACCESS_KEY")
        )
        sas = conn.get("sharedaccesssignature") or os.environ.get("AZURE_STORAGE_SAS_TOKEN")
        tuning = Tuning.from_query(query, location)
        return cls(container, prefix, account, endpoint, key, sas, tuning)


class AzureStore(ObstoreStore):
    """Blobs under ``PREFIX/`` in a container."""

    root_kind = "container"
    missing_root_codes = ("ContainerNotFound",)
    credentials_hint = (
        "check the credentials (AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY,"
        " AZURE_STORAGE_CONNECTION_STRING, a SAS token, or an Azure AD identity with the"
        " Storage Blob Data Contributor role)"
    )

    def __init__(
        self,
        location: str,
        *,
        account_key: str | None = None,
        connections: int | None = None,
    ) -> None:
        w = AzureLocation.parse(location)
        if account_key is not None:
            w = replace(w, key=account_key)
        if not w.account:
            raise InvalidArgument(
                f"no Azure storage account for {location}: add ?account=NAME, or set"
                " AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING"
            )
        tuning = w.tuning if connections is None else replace(w.tuning, connections=connections)
        where = f"az://{w.container}/{w.prefix}".rstrip("/") + f" (account {w.account})"
        self._setup(location, where, tuning, w.container)
        self.azure = w
        config: dict[str, Any] = {"account_name": w.account}
        if w.endpoint:
            config["endpoint"] = w.endpoint
        if w.key:
            config["account_key"] = w.key
        elif w.sas:
            config["sas_key"] = w.sas.lstrip("?")
        allow_http = bool(w.endpoint and w.endpoint.startswith("http://"))
        try:
            self._store = obstore.store.AzureStore(
                w.container,
                prefix=w.prefix or None,
                config=config,  # type: ignore[arg-type]
                client_options=tuning.client_options(allow_http),
                retry_config=NO_RETRIES,
            )
        except (obs_errors.BaseError, ValueError) as exc:
            raise StoreError(f"cannot open {location}: {first_line(exc)}") from exc

    def create(self) -> None:
        if self.exists():
            return
        try:
            from azure.core.exceptions import AzureError, ResourceExistsError
            from azure.storage.blob import ContainerClient
        except ImportError:
            raise StoreError(
                f"container {self.azure.container} does not exist at {self.where}; create it"
                " (az storage container create), or install safehold[azure] so that init can"
            ) from None
        w = self.azure
        credential: Any
        if w.key:
            credential = {"account_name": w.account, "account_key": w.key}
        elif w.sas:
            credential = w.sas.lstrip("?")
        else:
            raise StoreError(
                f"container {w.container} does not exist at {self.where}; safehold creates"
                " containers only with an account key or a SAS: create it yourself"
                f" (az storage container create --name {w.container})"
            )
        url = w.endpoint or f"https://{w.account}.blob.core.windows.net"
        client = ContainerClient(
            url, w.container, credential=credential, retry_total=self.tuning.attempts - 1
        )
        try:
            client.create_container()
        except ResourceExistsError:
            return
        except AzureError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"cannot create container {w.container} at {self.where}: {reason}"
            ) from exc


def _connection_string(text: str) -> dict[str, str]:
    """``Key=Value;…`` with lower-cased keys (values may contain ``=``)."""
    pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
    return {k.strip().lower(): v.strip() for k, v in pairs}
