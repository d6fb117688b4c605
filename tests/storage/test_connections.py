"""``--connections``: how many packs a backup uploads at once, and how many requests a cloud
store sends at once."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from safehold.repo.repository import Repository
from safehold.storage import LocalStore, MemoryStore, open_store
from safehold.storage.s3 import S3Store
from tests.archive.helpers import backup, write
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.servers import S3Server
from tests.storage.faultproxy import FaultPlan, fault_proxy


class SlowStore(MemoryStore):
    """Counts how many pack writes overlap."""

    def __init__(self, connections: int) -> None:
        super().__init__()
        self.connections = connections
        self.now = 0
        self.peak = 0
        self._count = threading.Lock()

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        if key.startswith("data/"):
            with self._count:
                self.now += 1
                self.peak = max(self.peak, self.now)
            time.sleep(0.05)
            with self._count:
                self.now -= 1
        super().put(key, data, if_absent=if_absent)


@pytest.mark.parametrize("connections", [1, 3])
def test_backup_uploads_as_many_packs_at_once_as_the_store_allows(
    connections: int, tmp_path: Path
) -> None:
    store = SlowStore(connections)
    repo = Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=64 * 1024)
    for n in range(12):
        write(tmp_path / "src" / f"f{n}", os.urandom(200_000))
    result = backup(repo, tmp_path / "src")
    assert result.snapshot.id
    assert store.peak == connections


def test_defaults_and_the_option() -> None:
    def connections(location: str, option: int | None = None) -> int:
        return int(getattr(open_store(location, option), "connections"))  # noqa: B009

    assert LocalStore("/nonexistent").connections == 2
    assert connections("/nonexistent", 5) == 5
    assert connections("s3://b/p?endpoint=http://127.0.0.1:1") == 4
    assert connections("s3://b/p?endpoint=http://127.0.0.1:1&connections=6") == 6
    # the command line wins over the location
    assert connections("s3://b/p?endpoint=http://127.0.0.1:1&connections=6", 2) == 2


def test_a_cloud_store_sends_at_most_connections_requests_at_once(seaweedfs: S3Server) -> None:
    bucket = f"c-{uuid.uuid4().hex}"
    with fault_proxy(seaweedfs.endpoint, FaultPlan(delay=0.05)) as proxy:
        location = S3Server(proxy.endpoint, "", "").location(bucket, "r") + "&connections=3"
        store = S3Store(
            location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
        )
        store.create()
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(lambda n: store.put(f"data/{n:02x}/o", b"x" * 1000), range(36)))
            list(pool.map(lambda n: store.get(f"data/{n:02x}/o", (0, 10)), range(36)))
        assert proxy.plan.peak_in_flight == 3
