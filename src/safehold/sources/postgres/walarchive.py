"""WAL files in the repository: ``wal/<system id>/<file name>``, one object per file.

Each object is ``seal(master.encryption, payload(file bytes))`` (docs/FORMAT.md §13), the
sealing of index and snapshot documents. Objects are written create-if-absent: pushing a
file that is already archived succeeds when the content is the same (a node re-archiving
what another already pushed, as every node of a hot standby does) and fails loudly when it
differs (two clusters with one system identifier, or a damaged segment); the archived copy
is never touched. A refusal is recorded next to the WAL as
``<name>.<first 16 hex of the refused content's SHA-256>.refused`` (a sealed JSON document:
when, from which host) so that ``pg status`` reports it.

A ``.partial`` segment (the old timeline's last segment, archived by a promoted standby) is
never read by recovery: its WAL up to the switch is in the new timeline's first segment.
One that differs from the archived copy is refused and recorded the same way, but the push
succeeds, so that archiving of the new timeline is not held up behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from safehold.errors import CorruptObject, LogConflict, NotFound, SafeholdError
from safehold.repo.repository import Repository
from safehold.sources.postgres.walnames import WalName, parse_wal_name
from safehold.storage.base import ObjectStore

__all__ = [
    "REFUSED_SUFFIX",
    "PushOutcome",
    "WalConflict",
    "WalMissing",
    "fetch_wal",
    "list_system_ids",
    "list_wal",
    "push_wal",
    "wal_key",
]

PREFIX = "wal/"
REFUSED_SUFFIX = ".refused"
PushOutcome = Literal["stored", "present", "refused-partial"]


class WalConflict(SafeholdError):
    """{0} is already archived with different content; refusing to overwrite it (the
    archived copy is kept; `safehold pg status` lists the refusal)"""

    exit_code = 2


class WalMissing(SafeholdError):
    """WAL file {0} is not in the repository"""

    exit_code = 4


def wal_key(system_id: str, name: str) -> str:
    if parse_wal_name(name) is None:
        raise CorruptObject(name, "not a WAL file name")
    return f"{PREFIX}{system_id}/{name}"


def push_wal(repo: Repository, system_id: str, name: str, data: bytes) -> PushOutcome:
    """Archive one WAL file: ``stored``, or ``present`` when the same content was already
    there, or ``refused-partial`` for a differing ``.partial`` (kept out, recorded)."""
    key = wal_key(system_id, name)
    try:
        return "stored" if repo.put_log_file(key, data) else "present"
    except LogConflict:
        record_refusal(repo, system_id, name, data)
        if name.endswith(".partial"):
            return "refused-partial"
        raise WalConflict(key) from None


def record_refusal(repo: Repository, system_id: str, name: str, data: bytes) -> None:
    """Note a refused push once per content (the first time it was refused is kept); a
    store error here never hides the refusal itself."""
    digest = hashlib.sha256(data).hexdigest()
    doc = {
        "name": name,
        "refused_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "size": len(data),
        "sha256": digest,
    }
    key = f"{PREFIX}{system_id}/{name}.{digest[:16]}{REFUSED_SUFFIX}"
    with contextlib.suppress(SafeholdError):  # LogConflict: recorded before, kept as it was
        repo.put_log_file(key, json.dumps(doc, sort_keys=True).encode())


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
