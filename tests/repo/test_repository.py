"""The repository: creating, opening, keys, blobs through the writer, index, snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from safehold.errors import (
    CorruptObject,
    InvalidArgument,
    NotARepository,
    RepositoryExists,
    RepositoryMissing,
    SnapshotNotFound,
    StoreError,
    WrongPassword,
)
from safehold.repo.crypto import content_hash
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository, pack_key
from safehold.repo.snapshot import Snapshot, find_snapshot
from safehold.storage import LocalStore, MemoryStore, ObjectStore

from ..conftest import CHEAP_KDF, PASSWORD

OTHER_PASSWORD = b"another password"


class IndexWritesFail(MemoryStore):
    """A store on which the next index write fails (a network error, a full disk)."""

    fail_next_index = False

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        if key.startswith("index/") and self.fail_next_index:
            self.fail_next_index = False
            raise StoreError(f"cannot write {key}")
        super().put(key, data, if_absent=if_absent)


def reopen(repo: Repository, password: bytes = PASSWORD) -> Repository:
    again = Repository.open(repo.store, password)
    again.load_index()
    return again


def save_blobs(
    repo: Repository, blobs: list[bytes], blob_type: BlobType = BlobType.DATA
) -> list[bytes]:
    with repo.writer(workers=2) as w:
        return [w.save(blob_type, b)[0] for b in blobs]


def flip_byte(store: ObjectStore, key: str, offset: int) -> None:
    data = bytearray(store.get(key))
    data[offset] ^= 0xFF
    store.put(key, bytes(data))


# ---- init and open --------------------------------------------------------------------


def test_init_refuses_an_existing_repository(memory_repo: Repository) -> None:
    with pytest.raises(RepositoryExists):
        Repository.init(memory_repo.store, PASSWORD, CHEAP_KDF)
    with pytest.raises(RepositoryExists):
        Repository.init(memory_repo.store, OTHER_PASSWORD, CHEAP_KDF)
    assert len(memory_repo.list_keys()) == 1


def test_init_refuses_an_existing_local_repository(local_repo: Repository) -> None:
    with pytest.raises(RepositoryExists):
        Repository.init(LocalStore(local_repo.store.location), PASSWORD, CHEAP_KDF)


def test_init_in_an_existing_empty_directory(tmp_path: Path) -> None:
    repo = Repository.init(LocalStore(tmp_path), PASSWORD, CHEAP_KDF)
    assert Repository.open(LocalStore(tmp_path), PASSWORD).config == repo.config


def test_init_stores_the_config_overrides(tmp_path: Path) -> None:
    Repository.init(
        LocalStore(tmp_path / "r"),
        PASSWORD,
        CHEAP_KDF,
        chunk_min=4096,
        chunk_avg=8192,
        pack_size=1 << 20,
    )
    config = Repository.open(LocalStore(tmp_path / "r"), PASSWORD).config
    assert (config.chunk_min, config.chunk_avg, config.pack_size) == (4096, 8192, 1 << 20)
    assert len(config.id) == 32


@pytest.mark.parametrize(
    "overrides",
    [
        {"chunk_min": 65536, "chunk_avg": 4096},  # min > avg
        {"chunk_min": 4096, "chunk_avg": 8192, "chunk_max": 4096},  # avg > max
        {"chunk_min": 32},
        {"chunk_max": 32 << 20},
        {"compression_level": 23},
        {"pack_size": 100},
    ],
)
def test_init_refuses_parameters_that_cannot_work(overrides: dict[str, int]) -> None:
    """The chunker parameters are fixed at init: a repository that cannot back up is useless."""
    store = MemoryStore()
    with pytest.raises(InvalidArgument):
        Repository.init(store, PASSWORD, CHEAP_KDF, **overrides)
    assert store.objects == {}


def test_open_with_the_wrong_password(memory_repo: Repository) -> None:
    with pytest.raises(WrongPassword):
        Repository.open(memory_repo.store, b"wrong")


def test_open_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RepositoryMissing):
        Repository.open(LocalStore(tmp_path / "nothing here"), PASSWORD)


def test_open_a_directory_without_config(tmp_path: Path) -> None:
    (tmp_path / "some file").write_text("not a repository")
    with pytest.raises(NotARepository, match="no config"):
        Repository.open(LocalStore(tmp_path), PASSWORD)


def test_open_a_directory_with_a_foreign_config(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[core]\nbare = true\n")
    with pytest.raises(NotARepository):
        Repository.open(LocalStore(tmp_path), PASSWORD)


def test_open_refuses_a_newer_format(memory_repo: Repository) -> None:
    doc = json.loads(memory_repo.store.get("config"))
    doc["version"] = 2
    memory_repo.store.put("config", json.dumps(doc).encode())
    with pytest.raises(NotARepository, match="version 2"):
        Repository.open(memory_repo.store, PASSWORD)


def test_open_detects_a_tampered_config(memory_repo: Repository) -> None:
    doc = json.loads(memory_repo.store.get("config"))
    doc["data"] = doc["data"][:-8] + "AAAAAAA="
    memory_repo.store.put("config", json.dumps(doc).encode())
    with pytest.raises(CorruptObject, match="config"):
        Repository.open(memory_repo.store, PASSWORD)


# ---- keys -----------------------------------------------------------------------------


def test_add_a_key(memory_repo: Repository) -> None:
    new_id = memory_repo.add_key(OTHER_PASSWORD, CHEAP_KDF)
    other = Repository.open(memory_repo.store, OTHER_PASSWORD)
    assert other.key == memory_repo.key
    assert other.key_id == new_id
    assert new_id == content_hash(memory_repo.store.get(f"keys/{new_id}"))
    keys = {k.id: k for k in memory_repo.list_keys()}
    assert set(keys) == {memory_repo.key_id, new_id}
    assert keys[memory_repo.key_id].current
    assert not keys[new_id].current


def test_remove_a_key(memory_repo: Repository) -> None:
    new_id = memory_repo.add_key(OTHER_PASSWORD, CHEAP_KDF)
    with pytest.raises(InvalidArgument, match="in use"):
        memory_repo.remove_key(memory_repo.key_id[:8])
    with pytest.raises(InvalidArgument, match="matches 0 keys"):
        memory_repo.remove_key("zzzz")
    assert memory_repo.remove_key(new_id[:8]) == new_id
    with pytest.raises(WrongPassword):
        Repository.open(memory_repo.store, OTHER_PASSWORD)
    assert [k.id for k in memory_repo.list_keys()] == [memory_repo.key_id]


def test_remove_a_key_by_an_ambiguous_prefix(memory_repo: Repository) -> None:
    memory_repo.add_key(OTHER_PASSWORD, CHEAP_KDF)
    with pytest.raises(InvalidArgument, match="matches 2 keys"):
        memory_repo.remove_key("")


def test_a_damaged_key_file_does_not_lock_out_the_other_passwords(
    memory_repo: Repository,
) -> None:
    new_id = memory_repo.add_key(OTHER_PASSWORD, CHEAP_KDF)
    damaged = min(memory_repo.key_id, new_id)  # the one listed first
    memory_repo.store.put(f"keys/{damaged}", b"\x00 damaged on disk")
    password = PASSWORD if damaged == new_id else OTHER_PASSWORD
    assert Repository.open(memory_repo.store, password).key == memory_repo.key


def test_change_the_password(memory_repo: Repository) -> None:
    old_id = memory_repo.key_id
    new_id = memory_repo.change_password(OTHER_PASSWORD, CHEAP_KDF)
    assert memory_repo.key_id == new_id != old_id
    with pytest.raises(WrongPassword):
        Repository.open(memory_repo.store, PASSWORD)
    assert Repository.open(memory_repo.store, OTHER_PASSWORD).key == memory_repo.key
    assert [k.id for k in memory_repo.list_keys()] == [new_id]


# ---- blobs, packs, index --------------------------------------------------------------


def test_save_and_load_blobs(memory_repo: Repository) -> None:
    blobs = [os.urandom(100_000) for _ in range(6)] + [b"text " * 5000, b""]
    with memory_repo.writer(workers=2) as w:
        ids = [w.save(BlobType.DATA, b) for b in blobs]
        again = w.save(BlobType.DATA, blobs[0])
        tree_id, new = w.save(BlobType.TREE, b'{"nodes":[]}')
    assert all(new for _, new in ids) and new
    assert again == (ids[0][0], False)
    assert w.stats.blobs_new == 9 and w.stats.blobs_reused == 1
    assert w.stats.packs >= 3  # 256 KiB packs, plus a separate tree pack
    for (blob_id, _), data in zip(ids, blobs, strict=True):
        assert memory_repo.load_blob(blob_id) == data
        assert memory_repo.locate(blob_id).type is BlobType.DATA
    assert memory_repo.locate(tree_id).type is BlobType.TREE
    assert memory_repo.load_tree_document(tree_id.hex()) == {"nodes": []}


def test_blobs_already_in_the_repository_are_not_stored_again(memory_repo: Repository) -> None:
    save_blobs(memory_repo, [b"a" * 1000, b"b" * 1000])
    before = set(memory_repo.store.objects)  # type: ignore[attr-defined]
    with memory_repo.writer(workers=2) as w:
        assert not w.save(BlobType.DATA, b"a" * 1000)[1]
    assert set(memory_repo.store.objects) == before  # type: ignore[attr-defined]


def test_index_reload(memory_repo: Repository) -> None:
    first = save_blobs(memory_repo, [os.urandom(150_000) for _ in range(4)])
    second = save_blobs(memory_repo, [os.urandom(150_000) for _ in range(4)])
    assert len(list(memory_repo.store.list("index/"))) == 2
    other = reopen(memory_repo)
    assert len(other.index) == 8
    assert dict(other.index.items()) == dict(memory_repo.index.items())
    for blob_id in first + second:
        assert other.load_blob(blob_id) == memory_repo.load_blob(blob_id)


def test_pack_headers_agree_with_the_index(memory_repo: Repository) -> None:
    save_blobs(memory_repo, [os.urandom(100_000) for _ in range(5)])
    for pack_id in memory_repo.index.packs():
        assert content_hash(memory_repo.store.get(pack_key(pack_id))) == pack_id
        for entry in memory_repo.read_pack_header(pack_id):
            loc = memory_repo.locate(entry.id)
            assert (loc.pack, loc.offset, loc.length, loc.raw_length) == (
                pack_id,
                entry.offset,
                entry.length,
                entry.raw_length,
            )


def test_a_writer_that_fails_before_any_upload_writes_nothing(memory_repo: Repository) -> None:
    with pytest.raises(RuntimeError), memory_repo.writer(workers=2) as w:
        blob_id, _ = w.save(BlobType.DATA, os.urandom(1000))
        raise RuntimeError("backup failed")
    assert list(memory_repo.store.list("index/")) == []
    assert list(memory_repo.store.list("data/")) == []
    assert blob_id not in memory_repo.index


def test_a_writer_that_fails_indexes_the_packs_it_wrote(memory_repo: Repository) -> None:
    with pytest.raises(RuntimeError), memory_repo.writer(workers=2) as w:
        blob_id, _ = w.save(BlobType.DATA, os.urandom(300_000))
        w.flush()
        raise RuntimeError("backup failed")
    assert len(list(memory_repo.store.list("index/"))) == 1
    assert reopen(memory_repo).locate(blob_id).pack in memory_repo.index.packs()


def test_a_failed_writer_does_not_poison_the_next_one() -> None:
    repo = Repository.init(MemoryStore(), PASSWORD, CHEAP_KDF, pack_size=1024)
    data = os.urandom(5000)
    with pytest.raises(RuntimeError), repo.writer(workers=2) as w:
        blob_id, _ = w.save(BlobType.DATA, data)
        w.flush()  # its pack is uploaded, as happens during any long backup
        raise RuntimeError("backup failed")
    with repo.writer(workers=2) as w:
        w.save(BlobType.DATA, data)  # the second backup of the same content
    assert reopen(repo).load_blob(blob_id) == data


def test_when_a_failed_writer_cannot_index_its_packs_it_forgets_them() -> None:
    store = IndexWritesFail()
    repo = Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=1024)
    data = os.urandom(5000)
    store.fail_next_index = True
    with pytest.raises(RuntimeError), repo.writer(workers=2) as w:
        blob_id, _ = w.save(BlobType.DATA, data)
        w.flush()
        raise RuntimeError("backup failed")
    assert blob_id not in repo.index
    with repo.writer(workers=2) as w:
        assert w.save(BlobType.DATA, data) == (blob_id, True)
    assert reopen(repo).load_blob(blob_id) == data


def test_when_the_index_write_fails_the_next_writer_is_not_poisoned() -> None:
    store = IndexWritesFail()
    repo = Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=1024)
    data = os.urandom(5000)
    store.fail_next_index = True
    with pytest.raises(StoreError), repo.writer(workers=2) as w:
        blob_id, _ = w.save(BlobType.DATA, data)
    with repo.writer(workers=2) as w:
        w.save(BlobType.DATA, data)  # the next backup, in the same process
    assert reopen(repo).load_blob(blob_id) == data


@pytest.mark.parametrize("where", ["blob", "header", "trailer"])
def test_a_corrupted_pack_byte_names_the_pack(local_repo: Repository, where: str) -> None:
    (blob_id,) = save_blobs(local_repo, [os.urandom(10_000)])
    loc = local_repo.locate(blob_id)
    name = pack_key(loc.pack)
    size = local_repo.store.stat(name).size
    offset = {"blob": loc.offset + 100, "header": size - 20, "trailer": size - 2}[where]
    flip_byte(local_repo.store, name, offset)
    repo = reopen(local_repo)
    with pytest.raises(CorruptObject, match=name):
        if where == "blob":
            repo.load_blob(blob_id)
        else:
            repo.read_pack_header(loc.pack)


def test_a_missing_pack_is_reported(memory_repo: Repository) -> None:
    (blob_id,) = save_blobs(memory_repo, [b"x" * 5000])
    name = pack_key(memory_repo.locate(blob_id).pack)
    memory_repo.store.delete(name)
    with pytest.raises(CorruptObject, match="pack is missing"):
        memory_repo.load_blob(blob_id)


def test_a_truncated_pack_is_corrupt_in_memory(memory_repo: Repository) -> None:
    (blob_id,) = save_blobs(memory_repo, [os.urandom(5000)])
    name = pack_key(memory_repo.locate(blob_id).pack)
    memory_repo.store.put(name, memory_repo.store.get(name)[:100])
    with pytest.raises(CorruptObject, match="truncated pack"):
        memory_repo.load_blob(blob_id)


def test_a_truncated_pack_is_corrupt_on_disk(local_repo: Repository) -> None:
    (blob_id,) = save_blobs(local_repo, [os.urandom(5000)])
    name = pack_key(local_repo.locate(blob_id).pack)
    local_repo.store.put(name, local_repo.store.get(name)[:100])
    with pytest.raises(CorruptObject, match="truncated"):
        local_repo.load_blob(blob_id)


def test_blob_not_in_the_index(memory_repo: Repository) -> None:
    with pytest.raises(CorruptObject, match="not in the index"):
        memory_repo.load_blob(b"\x00" * 32)


def test_a_data_blob_is_not_a_tree(memory_repo: Repository) -> None:
    (blob_id,) = save_blobs(memory_repo, [b'{"nodes": []}'])
    with pytest.raises(CorruptObject, match="not a tree"):
        memory_repo.load_tree_document(blob_id.hex())
    with pytest.raises(CorruptObject, match="invalid id"):
        memory_repo.load_tree_document("not hex")


def test_a_tampered_index_document_is_detected_and_the_others_still_serve(
    memory_repo: Repository,
) -> None:
    (lost,) = save_blobs(memory_repo, [b"abc" * 100])
    (info,) = memory_repo.store.list("index/")
    (kept,) = save_blobs(memory_repo, [b"xyz" * 100])
    flip_byte(memory_repo.store, info.key, 30)
    again = reopen(memory_repo)
    (damage,) = again.damaged_indexes
    assert isinstance(damage, CorruptObject) and "does not match its id" in str(damage)
    assert again.load_blob(kept) == b"xyz" * 100
    with pytest.raises(CorruptObject, match="not in the index"):
        again.load_blob(lost)


# ---- snapshots ------------------------------------------------------------------------


def make_snapshot(time: str, host: str = "h") -> Snapshot:
    return Snapshot(time=time, tree="ab" * 32, paths=["/data"], hostname=host)


def test_snapshots_list_and_find(memory_repo: Repository) -> None:
    ids = [
        memory_repo.save_snapshot(make_snapshot(t))
        for t in ("2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00", "2026-01-03T00:00:00Z")
    ]
    snapshots = Repository.open(memory_repo.store, PASSWORD).list_snapshots()
    assert [s.id for s in snapshots] == [ids[1], ids[0], ids[2]]
    assert all(content_hash(memory_repo.store.get(f"snapshots/{i}")) == i for i in ids)
    assert find_snapshot(snapshots, "latest").id == ids[2]
    assert find_snapshot(snapshots, ids[0][:8]).id == ids[0]
    assert find_snapshot(snapshots, ids[0][:8]).time == "2026-01-02T00:00:00+00:00"
    with pytest.raises(SnapshotNotFound):
        find_snapshot(snapshots, "x")


def test_snapshot_documents_are_sealed(memory_repo: Repository) -> None:
    sid = memory_repo.save_snapshot(make_snapshot("2026-01-01T00:00:00Z", host="secret-host"))
    assert b"secret-host" not in memory_repo.store.get(f"snapshots/{sid}")


def test_a_tampered_snapshot_is_detected(memory_repo: Repository) -> None:
    sid = memory_repo.save_snapshot(make_snapshot("2026-01-01T00:00:00Z"))
    flip_byte(memory_repo.store, f"snapshots/{sid}", 40)
    assert memory_repo.list_snapshots() == []  # skipped, not fatal: the others stay usable
    (damage,) = memory_repo.damaged_snapshots
    assert isinstance(damage, CorruptObject) and f"snapshots/{sid}" in str(damage)


def test_a_tampered_snapshot_under_its_new_hash_is_detected(memory_repo: Repository) -> None:
    sid = memory_repo.save_snapshot(make_snapshot("2026-01-01T00:00:00Z"))
    data = bytearray(memory_repo.store.get(f"snapshots/{sid}"))
    data[40] ^= 0x01
    memory_repo.store.delete(f"snapshots/{sid}")
    memory_repo.store.put(f"snapshots/{content_hash(bytes(data))}", bytes(data))
    assert memory_repo.list_snapshots() == []
    (damage,) = memory_repo.damaged_snapshots
    assert "authentication failed" in str(damage)


def test_a_snapshot_from_another_repository_is_refused(memory_repo: Repository) -> None:
    stranger = Repository.init(MemoryStore(), PASSWORD, CHEAP_KDF)
    sid = stranger.save_snapshot(make_snapshot("2026-01-01T00:00:00Z"))
    memory_repo.store.put(f"snapshots/{sid}", stranger.store.get(f"snapshots/{sid}"))
    assert memory_repo.list_snapshots() == []
    (damage,) = memory_repo.damaged_snapshots
    assert "authentication failed" in str(damage)


def test_a_repository_without_key_files_says_so(memory_repo: Repository) -> None:
    for info in list(memory_repo.store.list("keys/")):
        memory_repo.store.delete(info.key)
    with pytest.raises(NotARepository, match="no key files"):
        Repository.open(memory_repo.store, PASSWORD)
