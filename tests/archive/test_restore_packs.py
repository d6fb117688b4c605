"""The pack-oriented restore: reads planned per pack, each blob read and decoded once.

The planning is checked on its own (which blobs go in which read); the restore itself
runs against the real SeaweedFS server with small packs, so that one snapshot spreads
over many of them: shared blobs, a blob repeated inside one file, a file spanning packs,
a sparse file, hardlinks, batches split anywhere, and damaged or missing packs.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safehold.archive import restore as restore_module
from safehold.archive.browse import walk
from safehold.archive.restore import RestoreOptions, Restorer, RestoreStats
from safehold.archive.restore_packs import ReadLimits, plan_reads
from safehold.archive.tree import Node
from safehold.errors import CorruptObject
from safehold.repo.index import BlobLocation
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository, pack_key
from safehold.storage.s3 import S3Store
from tests.archive.helpers import assert_same_tree, backup, inside, save_tree, write
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.servers import S3Server

KIB = 1024


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# ---- planning --------------------------------------------------------------------------


def ids(*names: str) -> list[bytes]:
    return [name.encode().ljust(32, b"-") for name in names]


A, B, C, D, E = ids("a", "b", "c", "d", "e")
LOCATIONS = {
    A: BlobLocation("p1", BlobType.DATA, 0, 100, 150),
    B: BlobLocation("p1", BlobType.DATA, 100, 100, 150),
    C: BlobLocation("p1", BlobType.DATA, 10_000, 100, 150),  # far from a and b
    D: BlobLocation("p2", BlobType.DATA, 0, 100, 150),
}


def locate(blob_id: bytes) -> BlobLocation:
    if blob_id not in LOCATIONS:
        raise CorruptObject(f"blob {blob_id.hex()}", "not in the index (data lost?)")
    return LOCATIONS[blob_id]


def test_each_blob_is_read_once_for_every_place_it_goes() -> None:
    reads, unusable = plan_reads([[A, B], [B, A, A], [D]], locate, ReadLimits(1000, 1 << 20))
    assert unusable == {}
    assert [(r.pack, r.offset, r.length) for r in reads] == [("p1", 0, 200), ("p2", 0, 100)]
    uses = {blob.blob_id: blob.uses for r in reads for blob in r.blobs}
    assert uses[A] == [(0, 0), (1, 150), (1, 300)]  # two files, twice in the second
    assert uses[B] == [(0, 150), (1, 0)]
    assert uses[D] == [(2, 0)]


def test_gaps_and_read_size_limit_coalescing() -> None:
    wide = plan_reads([[A, C]], locate, ReadLimits(max_gap=20_000, max_read=1 << 20))[0]
    assert [(r.offset, r.length) for r in wide] == [(0, 10_100)]  # the gap is read
    narrow = plan_reads([[A, C]], locate, ReadLimits(max_gap=1000, max_read=1 << 20))[0]
    assert [(r.offset, r.length) for r in narrow] == [(0, 100), (10_000, 100)]
    short = plan_reads([[A, B]], locate, ReadLimits(max_gap=1000, max_read=150))[0]
    assert [(r.offset, r.length) for r in short] == [(0, 100), (100, 100)]


def test_a_file_with_a_lost_blob_is_unusable_and_reads_nothing() -> None:
    reads, unusable = plan_reads([[A, E], [D]], locate, ReadLimits(1000, 1 << 20))
    assert list(unusable) == [0] and "not in the index" in str(unusable[0])
    assert [blob.blob_id for r in reads for blob in r.blobs] == [D]


# ---- restoring from SeaweedFS -----------------------------------------------------------


@dataclass
class Counted:
    """Requests per kind and decodes per blob, counted while a restore runs."""

    gets: collections.Counter[str]
    decodes: collections.Counter[bytes]


@pytest.fixture
def s3_repo(seaweedfs: S3Server) -> Repository:
    """Small packs and chunks, so a few MiB spread over many packs."""
    location = seaweedfs.location(f"t-{uuid.uuid4().hex}", "repo")
    store = S3Store(
        location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    return Repository.init(
        store,
        PASSWORD,
        CHEAP_KDF,
        pack_size=256 * KIB,
        chunk_min=16 * KIB,
        chunk_avg=16 * KIB,
        chunk_max=64 * KIB,
    )


def counting(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> Counted:
    counted = Counted(collections.Counter(), collections.Counter())
    lock = threading.Lock()
    get, decode = repo.store.get, repo.decode_blob

    def counting_get(key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        with lock:
            counted.gets["ranged" if byte_range else "whole"] += 1
        return get(key, byte_range)

    def counting_decode(blob_id: bytes, loc: BlobLocation, sealed: bytes) -> bytes:
        with lock:
            counted.decodes[blob_id] += 1
        return decode(blob_id, loc, sealed)

    monkeypatch.setattr(repo.store, "get", counting_get)
    monkeypatch.setattr(repo, "decode_blob", counting_decode)
    return counted


def make_source(root: Path) -> Path:
    """Files sharing blobs, one spanning many packs, a sparse one, hardlinks, small ones."""
    shared = random_bytes(200 * KIB, seed=1)
    write(root / "a" / "copy1.bin", shared)
    write(root / "b" / "copy2.bin", shared)
    write(root / "big.bin", random_bytes(3 << 20, seed=2))
    with open(root / "sparse.img", "wb") as f:  # zero chunks: one blob, many times over
        f.write(b"head")
        f.seek(1 << 20)
        f.write(random_bytes(40 * KIB, seed=3))
        f.truncate(3 << 20)
    for i in range(30):
        write(root / "small" / f"{i:02}.txt", f"small file {i}\n".encode() * (i + 1))
    write(root / "small" / "empty")
    os.link(root / "a" / "copy1.bin", root / "hardlink.bin")
    return root


def snapshot_files(repo: Repository, tree: str) -> dict[str, Node]:
    return {os.fsdecode(path): node for path, node in walk(repo, tree, b"") if node.type == "file"}


def run_restore(repo: Repository, tree: str, target: Path, **options: Any) -> RestoreStats:
    return Restorer(repo, RestoreOptions(workers=4, **options)).restore(tree, str(target))


@pytest.mark.parametrize("batch_files", [512, 3])
def test_restore_from_s3_reads_each_pack_once(
    s3_repo: Repository,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch_files: int,
) -> None:
    source = make_source(tmp_path / "src")
    tree = backup(s3_repo, source).snapshot.tree
    files = snapshot_files(s3_repo, tree)
    content = [blob for node in files.values() for blob in node.content]
    sparse, big = files[f"{source}/sparse.img"], files[f"{source}/big.bin"]
    assert len(sparse.content) > len(set(sparse.content))  # a blob repeated in one file
    assert len({s3_repo.locate(blob).pack for blob in big.content}) > 3  # spans packs
    packs = {s3_repo.locate(blob).pack for blob in content}

    monkeypatch.setattr(restore_module, "BATCH_FILES", batch_files)
    counted = counting(s3_repo, monkeypatch)
    stats = run_restore(s3_repo, tree, tmp_path / "target", verify=True)

    assert stats.errors == []
    assert stats.files_restored == len(files)
    assert stats.files_verified == len(files) - 1  # a hardlink's second name is a link()
    assert_same_tree(source, inside(tmp_path / "target", source))
    assert set(counted.decodes) >= set(content)
    if batch_files == 512:  # one batch: one read per pack, every blob decoded once
        assert max(counted.decodes[blob] for blob in content) == 1
        assert counted.gets["ranged"] == len(packs)
    else:  # a pack shared by two batches is read by each, in ranges
        assert counted.gets["ranged"] <= len(packs) + len(files)
    assert counted.gets["whole"] <= 2  # the tree packs: not a request per directory


def test_corrupt_and_missing_packs_fail_only_their_files(
    s3_repo: Repository, seaweedfs: S3Server, tmp_path: Path
) -> None:
    """Each file that needs a damaged pack is reported once, naming that pack; the rest
    restore byte for byte, including files that share the good blobs."""
    good, bad, lost = (random_bytes(50 * KIB, seed=s) for s in (10, 11, 12))
    with s3_repo.writer() as writer:
        good_id, _ = writer.save(BlobType.DATA, good)
    with s3_repo.writer() as writer:
        bad_id, _ = writer.save(BlobType.DATA, bad)
    with s3_repo.writer() as writer:
        lost_id, _ = writer.save(BlobType.DATA, lost)

    def file(name: str, *blobs: bytes, size: int) -> Node:
        return Node(name=name.encode(), type="file", mode=0o644, size=size, content=list(blobs))

    n = 50 * KIB
    tree = save_tree(
        s3_repo,
        [
            file("good1", good_id, size=n),
            file("good2", good_id, good_id, size=2 * n),
            file("mixed", good_id, bad_id, size=2 * n),
            file("victim1", bad_id, size=n),
            file("victim2", bad_id, size=n),
            file("zlost", lost_id, size=n),
        ],
    )
    bad_pack, lost_pack = (pack_key(s3_repo.locate(b).pack) for b in (bad_id, lost_id))
    assert isinstance(s3_repo.store, S3Store)
    client, bucket = seaweedfs.client(), s3_repo.store.s3.bucket
    raw = bytearray(client.get_object(Bucket=bucket, Key=f"repo/{bad_pack}")["Body"].read())
    raw[100] ^= 0x55  # inside the blob: its authentication fails
    client.put_object(Bucket=bucket, Key=f"repo/{bad_pack}", Body=bytes(raw))
    client.delete_object(Bucket=bucket, Key=f"repo/{lost_pack}")

    target = tmp_path / "target"
    stats = run_restore(s3_repo, tree, target)

    errors = dict(stats.errors)
    assert sorted(errors) == ["/mixed", "/victim1", "/victim2", "/zlost"]  # once each
    assert all(bad_pack in errors[f"/{name}"] for name in ("mixed", "victim1", "victim2"))
    assert "authentication failed" in errors["/victim1"]
    assert lost_pack in errors["/zlost"] and "missing" in errors["/zlost"]
    assert (target / "good1").read_bytes() == good
    assert (target / "good2").read_bytes() == good + good
    assert not (target / "victim1").exists() and not (target / "zlost").exists()
    assert stats.files_restored == 2


def open_fds() -> set[str]:
    """What this process holds open, sockets aside (the S3 client keeps connections)."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            held.add(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own descriptor
            continue
    return {name for name in held if not name.startswith(("socket:", "anon_inode:"))}


def test_an_interrupted_restore_closes_what_it_opened(s3_repo: Repository, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    tree = backup(s3_repo, source).snapshot.tree

    class Interrupting:
        wants_totals = False

        def __init__(self) -> None:
            self.files = 0

        def set_total(self, files: int, size: int) -> None: ...

        def error(self, path: str, message: str) -> None: ...

        def advance(self, files: int, size: int) -> None:
            self.files += files
            if self.files == 5:
                raise KeyboardInterrupt

    before = open_fds()
    restorer = Restorer(s3_repo, RestoreOptions(workers=4), Interrupting())
    with pytest.raises(KeyboardInterrupt):
        restorer.restore(tree, str(tmp_path / "target"))
    assert open_fds() <= before


def test_a_damaged_tree_pack_fails_only_its_directory(
    s3_repo: Repository, seaweedfs: S3Server, tmp_path: Path
) -> None:
    """Trees come a whole tree pack at a time; a damaged one falls back to the single
    tree read, which reports the directory as before, and its siblings still restore."""
    data = random_bytes(10 * KIB, seed=20)
    with s3_repo.writer() as writer:
        blob_id, _ = writer.save(BlobType.DATA, data)
    leaf = Node(name=b"f", type="file", mode=0o644, size=len(data), content=[blob_id])
    other = Node(name=b"g", type="file", mode=0o644, size=len(data), content=[blob_id])
    good, bad = save_tree(s3_repo, [leaf]), save_tree(s3_repo, [leaf, other])
    root = save_tree(
        s3_repo,
        [
            Node(name=b"bad", type="dir", mode=0o755, subtree=bad),
            Node(name=b"good", type="dir", mode=0o755, subtree=good),
        ],
    )
    bad_pack = pack_key(s3_repo.locate(bytes.fromhex(bad)).pack)
    assert isinstance(s3_repo.store, S3Store)
    client, bucket = seaweedfs.client(), s3_repo.store.s3.bucket
    raw = bytearray(client.get_object(Bucket=bucket, Key=f"repo/{bad_pack}")["Body"].read())
    raw[20] ^= 0x55
    client.put_object(Bucket=bucket, Key=f"repo/{bad_pack}", Body=bytes(raw))

    stats = run_restore(s3_repo, root, tmp_path / "target")

    [(path, message)] = stats.errors
    assert path == "/bad" and bad_pack in message
    assert (tmp_path / "target" / "good" / "f").read_bytes() == data
