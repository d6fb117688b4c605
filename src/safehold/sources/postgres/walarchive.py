"""WAL files in the repository: ``wal/<system id>/<file name>``, one object per file.

Each object is ``seal(master.encryption, payload(file bytes))`` (docs/FORMAT.md §13), the
sealing of index and snapshot documents. Objects are written create-if-absent: pushing a
file that is already archived succeeds when the content is the same and fails loudly when
it differs (two clusters with one system identifier, or a damaged segment).
"""

from __future__ import annotations

from collections.abc import Iterator

from safehold.errors import CorruptObject, LogConflict, NotFound, SafeholdError
from safehold.repo.repository import Repository
from safehold.sources.postgres.walnames import WalName, parse_wal_name
from safehold.storage.base import ObjectStore

__all__ = [
    "WalConflict",
    "WalMissing",
    "fetch_wal",
    "list_system_ids",
    "list_wal",
    "push_wal",
    "wal_key",
]

PREFIX = "wal/"


class WalConflict(SafeholdError):
    """{0} is already archived with different content; refusing to overwrite it"""

    exit_code = 2


class WalMissing(SafeholdError):
    """WAL file {0} is not in the repository"""

    exit_code = 4


def wal_key(system_id: str, name: str) -> str:
    if parse_wal_name(name) is None:
        raise CorruptObject(name, "not a WAL file name")
    return f"{PREFIX}{system_id}/{name}"


def push_wal(repo: Repository, system_id: str, name: str, data: bytes) -> bool:
    """Archive one WAL file; False when the same content was already there."""
    key = wal_key(system_id, name)
    try:
        return repo.put_log_file(key, data)
    except LogConflict:
        raise WalConflict(key) from None


def fetch_wal(repo: Repository, system_id: str, name: str) -> bytes:
    key = wal_key(system_id, name)
    try:
        return repo.get_log_file(key)
    except NotFound:
        raise WalMissing(key) from None


def list_system_ids(store: ObjectStore) -> list[str]:
    return sorted(
        {info.key.split("/")[1] for info in store.list(PREFIX) if info.key.count("/") == 2}
    )


def list_wal(store: ObjectStore, system_id: str) -> Iterator[WalName]:
    """Every archived WAL file of one cluster (unparseable names are skipped)."""
    for info in store.list(f"{PREFIX}{system_id}/"):
        parsed = parse_wal_name(info.key.rsplit("/", 1)[-1])
        if parsed is not None:
            yield parsed
