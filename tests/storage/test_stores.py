"""One conformance suite for every object store, plus what only a local disk can do wrong.

The guarantees come from ``safehold.storage.base``: read-after-write, atomic put,
create-if-absent, ``NotFound`` for missing objects.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safehold.errors import AlreadyExists, NotFound, StoreError
from safehold.storage import LocalStore, MemoryStore, ObjectStore
from safehold.storage.azure import AzureStore
from safehold.storage.s3 import S3Store
from tests.servers import AzureServer, S3Server

StoreFactory = Callable[[], ObjectStore]


@pytest.fixture(params=["memory", "local", "s3", "azure"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory, so one test can make a second store over the same place (local, S3, Azure) or a new one."""
    if request.param == "memory":
        return MemoryStore
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("seaweedfs")
        location = server.location(f"t-{uuid.uuid4().hex}", "repo/one")
        return lambda: S3Store(
            location, access_key_id=server.access_key, secret_access_key=server.secret_key
        )
    if request.param == "azure":
        azure: AzureServer = request.getfixturevalue("azurite")
        az_location = azure.location(f"t-{uuid.uuid4().hex}", "repo/one")
        return lambda: AzureStore(az_location, account_key=azure.key)
    return lambda: LocalStore(tmp_path / "store")


@pytest.fixture
def store(make_store: StoreFactory) -> ObjectStore:
    s = make_store()
    s.create()
    return s


def keys(store: ObjectStore, prefix: str) -> list[str]:
    return sorted(info.key for info in store.list(prefix))


# ---- conformance: every store ---------------------------------------------------------


def test_create_makes_the_store_exist_and_is_idempotent(make_store: StoreFactory) -> None:
    s = make_store()
    assert not s.exists()
    s.create()
    assert s.exists()
    s.create()
    assert s.exists()
    assert keys(s, "") == []


def test_put_then_get_returns_the_same_bytes(store: ObjectStore) -> None:
    store.put("config", b"hello")
    store.put("data/ab/abcdef", memoryview(b"\x00\x01binary\xff"))
    store.put("empty", b"")
    assert store.get("config") == b"hello"
    assert store.get("data/ab/abcdef") == b"\x00\x01binary\xff"
    assert store.get("empty") == b""


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put("snapshots/x", b"old and longer")
    store.put("snapshots/x", b"new")
    assert store.get("snapshots/x") == b"new"
    assert store.stat("snapshots/x").size == 3


def test_put_if_absent_never_overwrites(store: ObjectStore) -> None:
    store.put("keys/k", b"first", if_absent=True)
    with pytest.raises(AlreadyExists):
        store.put("keys/k", b"second", if_absent=True)
    assert store.get("keys/k") == b"first"
    assert keys(store, "keys/") == ["keys/k"]


def test_put_if_absent_has_exactly_one_winner(store: ObjectStore) -> None:
    winners: list[int] = []
    losers: list[int] = []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            store.put("config", f"writer {n}".encode(), if_absent=True)
            winners.append(n)
        except AlreadyExists:
            losers.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(losers) == 7
    assert store.get("config") == f"writer {winners[0]}".encode()


def test_ranged_get(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    store.put("data/00/pack", data)
    assert store.get("data/00/pack", (0, 10)) == data[:10]
    assert store.get("data/00/pack", (300, 200)) == data[300:500]
    assert store.get("data/00/pack", (len(data) - 6, 6)) == data[-6:]
    assert store.get("data/00/pack", (0, len(data))) == data
    assert store.get("data/00/pack", (17, 0)) == b""


def test_ranged_get_past_the_end_gives_the_bytes_that_exist(store: ObjectStore) -> None:
    """base.py: as S3 does; the caller, who knows the length it expects, judges."""
    store.put("data/00/pack", b"0123456789")
    assert store.get("data/00/pack", (5, 10)) == b"56789"
    assert store.get("data/00/pack", (10, 4)) == b""
    assert store.get("data/00/pack", (50, 4)) == b""


def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        store.get("snapshots/nope")
    with pytest.raises(NotFound):
        store.get("data/00/nope", (0, 4))
    with pytest.raises(NotFound):
        store.stat("snapshots/nope")
    with pytest.raises(NotFound):
        store.delete("snapshots/nope")


def test_list_by_prefix(store: ObjectStore) -> None:
    objects = {
        "config": b"c",
        "keys/k1": b"key",
        "data/ab/ab01": b"x" * 10,
        "data/ab/ab02": b"x" * 20,
        "data/cd/cd01": b"x" * 30,
        "index/i1": b"idx",
        "snapshots/s1": b"snap",
    }
    for key, data in objects.items():
        store.put(key, data)
    assert keys(store, "") == sorted(objects)
    assert keys(store, "data/") == ["data/ab/ab01", "data/ab/ab02", "data/cd/cd01"]
    assert keys(store, "data/ab/") == ["data/ab/ab01", "data/ab/ab02"]
    assert keys(store, "data/ab/ab0") == ["data/ab/ab01", "data/ab/ab02"]
    assert keys(store, "snap") == ["snapshots/s1"]
    assert keys(store, "locks/") == []
    assert {i.key: i.size for i in store.list("data/")} == {
        "data/ab/ab01": 10,
        "data/ab/ab02": 20,
        "data/cd/cd01": 30,
    }
    if not isinstance(store, MemoryStore):  # when each was written (a replica's lag needs it)
        now = datetime.now(UTC)
        for info in store.list(""):
            assert info.modified is not None and abs(info.modified - now) < timedelta(minutes=5)


def test_stat_gives_the_size(store: ObjectStore) -> None:
    store.put("index/abc", b"12345")
    info = store.stat("index/abc")
    assert (info.key, info.size) == ("index/abc", 5)


def test_delete_removes_the_object(store: ObjectStore) -> None:
    store.put("keys/a", b"a")
    store.put("keys/b", b"b")
    store.delete("keys/a")
    with pytest.raises(NotFound):
        store.get("keys/a")
    assert keys(store, "keys/") == ["keys/b"]
    store.put("keys/a", b"again", if_absent=True)  # the name is free once more
    assert store.get("keys/a") == b"again"


def test_readers_never_see_a_partial_object(store: ObjectStore) -> None:
    """Atomic put: whatever ``list`` shows is complete, while large puts are under way."""
    size, count = 512 * 1024, 12
    payloads = {f"data/{n:02x}/obj{n}": bytes([n]) * size for n in range(count)}
    done = threading.Event()
    seen: set[str] = set()
    problems: list[str] = []

    def write() -> None:
        for key, data in payloads.items():
            store.put(key, data)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while True:
        finished = done.is_set()
        for info in store.list("data/"):
            if info.key not in payloads:
                problems.append(f"unexpected key {info.key}")
            elif info.size != size or store.get(info.key) != payloads[info.key]:
                problems.append(f"partial {info.key}: {info.size} bytes")
            seen.add(info.key)
        if finished:
            break
    writer.join()
    assert problems == []
    assert seen == set(payloads)


def test_a_store_opened_again_sees_the_objects(make_store: StoreFactory) -> None:
    first = make_store()
    first.create()
    first.put("config", b"c")
    second = first if isinstance(first, MemoryStore) else make_store()
    assert second.exists()
    assert second.get("config") == b"c"


# ---- the local directory store --------------------------------------------------------


def test_local_store_refuses_keys_that_escape_its_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    store.create()
    for key in ("", "/etc/passwd", "../outside", "data/../../outside"):
        with pytest.raises(StoreError):
            store.put(key, b"x")
    assert not (tmp_path / "outside").exists()


def test_local_store_hides_the_temporary_files_of_unfinished_puts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    store.put("index/abc", b"whole")
    (tmp_path / "repo" / "index" / ".def.tmp-123-abc").write_bytes(b"half")
    assert keys(store, "index/") == ["index/abc"]
    assert keys(store, "") == ["index/abc"]


def test_local_store_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    store.put("keys/a", b"a", if_absent=True)
    store.put("keys/b", b"b")
    store.put("keys/b", b"b2")
    with pytest.raises(AlreadyExists):
        store.put("keys/a", b"a2", if_absent=True)
    assert sorted(os.listdir(tmp_path / "repo" / "keys")) == ["a", "b"]


def test_local_store_temporary_names_are_unique(tmp_path: Path) -> None:
    """Temp names must not repeat across processes: a crashed put's file must not block."""
    store = LocalStore(tmp_path / "repo")
    names: set[str] = set()
    real_open = os.open

    def spy(path: str | bytes | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
        name = os.path.basename(os.fsdecode(path))
        if name.startswith("."):  # temp files only, not the directory opened for fsync
            names.add(name)
        return real_open(path, flags, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", spy)
        for _ in range(20):
            store.put("snapshots/b", b"b")
    assert len(names) == 20
    assert all(n.startswith(".b.tmp-") for n in names)


def test_local_store_put_survives_stale_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    store.put("snapshots/a", b"a")
    for suffix in (f"{os.getpid()}-{threading.get_ident():x}", "0123456789abcdef"):
        (tmp_path / "repo" / "snapshots" / f".b.tmp-{suffix}").write_bytes(b"left by a crash")
    store.put("snapshots/b", b"b")
    store.put("snapshots/c", b"c", if_absent=True)
    assert store.get("snapshots/b") == b"b"
    assert keys(store, "snapshots/") == ["snapshots/a", "snapshots/b", "snapshots/c"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that fills up."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mountpoint], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", mountpoint], check=True)


@pytest.mark.parametrize("if_absent", [False, True])
def test_local_store_full_disk(small_disk: Path, if_absent: bool) -> None:
    store = LocalStore(small_disk / "repo")
    store.create()
    store.put("data/00/small", b"s" * (512 * 1024), if_absent=if_absent)
    with pytest.raises(StoreError, match="no space left") as excinfo:
        store.put("data/11/big", os.urandom(3 * 1024 * 1024), if_absent=if_absent)
    assert "data/11/big" in str(excinfo.value)
    with pytest.raises(NotFound):
        store.get("data/11/big")
    assert keys(store, "") == ["data/00/small"]
    leftovers = [p for p in (small_disk / "repo").rglob("*") if p.is_file()]
    assert leftovers == [small_disk / "repo" / "data" / "00" / "small"]
    # the space of the failed put was given back: a put that fits works again
    store.put("data/22/fits", b"f" * (512 * 1024), if_absent=if_absent)
    assert store.get("data/22/fits") == b"f" * (512 * 1024)
