"""Backups of live buckets: keys as paths, incremental downloads, restores into buckets.

Most tests run against the session's SeaweedFS, each in fresh buckets; the malicious-key
tests use ``MemoryBucket`` because SeaweedFS itself refuses or normalises such keys
(``..`` segments are rejected, ``a//b`` becomes ``a/b``), while AWS S3 stores them as is.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from safehold.archive.restore import RestoreOptions, Restorer
from safehold.archive.tree import safe_name
from safehold.errors import AlreadyExists, NotFound, StoreError, TransientStoreError
from safehold.repo.repository import Repository
from safehold.sources.bucket import OBJECT_FIELD, backup_bucket, plan_layout
from safehold.sources.bucket_client import (
    FetchedObject,
    ListedObject,
    ObstoreBucket,
    open_bucket,
)
from safehold.sources.bucket_restore import restore_to_bucket
from safehold.storage import MemoryStore
from tests.conftest import CHEAP_KDF, PASSWORD
from tests.servers import AzureServer, S3Server

MiB = 1 << 20


def fresh_bucket() -> str:
    return f"t-{uuid.uuid4().hex}"


# ---- a bucket in memory (for keys that a real S3 server refuses) ------------------------


class MemoryBucket:
    """The ``Bucket`` protocol over a dict: keys are stored exactly as given."""

    def __init__(self, name: str = "mem", prefix: str = "") -> None:
        self.location = f"s3://{name}/{prefix}".rstrip("/")
        self.bucket, self.prefix, self.endpoint = name, prefix, "memory"
        self.objects: dict[str, tuple[bytes, dict[str, str], int]] = {}
        self._clock = 1_700_000_000_000_000_000

    def add(self, key: str, data: bytes, attributes: dict[str, str] | None = None) -> None:
        self._clock += 1_000_000_000
        self.objects[key] = (data, dict(attributes or {}), self._clock)

    def _info(self, key: str) -> ListedObject:
        data, _, modified = self.objects[key]
        return ListedObject(key, len(data), f'"{hashlib.md5(data).hexdigest()}"', modified)

    def list(self) -> Iterator[ListedObject]:
        for key in sorted(self.objects):
            yield self._info(key)

    def get(self, key: str) -> FetchedObject:
        if key not in self.objects:
            raise NotFound(key)
        data, attributes, _ = self.objects[key]
        return FetchedObject(self._info(key), dict(attributes), io.BytesIO(data))

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        attributes: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> None:
        if if_absent and key in self.objects:
            raise AlreadyExists(key)
        self.add(key, data if isinstance(data, bytes) else b"".join(data), attributes)

    def create(self) -> None:
        pass


# ---- helpers for the real server --------------------------------------------------------


def make_bucket(server: S3Server) -> str:
    name = fresh_bucket()
    server.client().create_bucket(Bucket=name)
    return name


def put(
    server: S3Server,
    bucket: str,
    key: str,
    body: bytes,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> None:
    server.client().put_object(
        Bucket=bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata or {}
    )


def bucket_state(server: S3Server, bucket: str, prefix: str = "") -> dict[str, tuple[Any, ...]]:
    """Every object under ``prefix``: (sha256, size, content type, user metadata), by key."""
    client = server.client()
    state: dict[str, tuple[Any, ...]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=obj["Key"])
            body = got["Body"].read()
            state[obj["Key"][len(prefix) :]] = (
                hashlib.sha256(body).hexdigest(),
                obj["Size"],
                got["ContentType"],
                got["Metadata"],
            )
    return state


def sample_objects(server: S3Server, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Nested keys, content types, user metadata, empty objects, a 20 MiB object."""
    big = random.Random(7).randbytes(20 * MiB)
    objects = {
        "index.html": (b"<h1>hi</h1>", "text/html; charset=utf-8", {"owner": "web"}),
        "a": (b"an object that is also a prefix", "text/plain", {}),
        "a/b.txt": (b"nested", "text/plain", {"review": "yes", "Mixed-Case": "Kept"}),
        "a/deep/er/c.json": (b'{"x": 1}', "application/json", {}),
        "empty": (b"", "application/x-empty", {"why": "empty objects count"}),
        "a/empty-too": (b"", "text/plain", {}),
        "photos/ünïcødé name & 100%.jpg": (b"\xff\xd8\xff" * 1000, "image/jpeg", {}),
        "big/blob.bin": (big, "application/octet-stream", {"size": "20MiB"}),
    }
    for key, (body, ctype, meta) in objects.items():
        put(server, bucket, prefix + key, body, ctype, meta)
    return {key: body for key, (body, _, _) in objects.items()}


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, seaweedfs: S3Server) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    return seaweedfs


def tree_nodes(repo: Repository, tree: str) -> list[dict[str, Any]]:
    nodes = repo.load_tree_document(tree)["nodes"]
    assert isinstance(nodes, list)
    return nodes


def restore_dir(repo: Repository, tree: str, target: Path) -> None:
    stats = Restorer(repo, RestoreOptions()).restore(tree, str(target))
    assert stats.errors == []


# ---- keys as paths ----------------------------------------------------------------------


def test_layout_mirrors_ordinary_keys_as_paths() -> None:
    layout = plan_layout(["a/b/c.txt", "a/d", "top", "ü/ñ.txt"])
    assert layout == {
        "a/b/c.txt": (b"a", b"b", b"c.txt"),
        "a/d": (b"a", b"d"),
        "top": (b"top",),
        "ü/ñ.txt": ("ü".encode(), "ñ.txt".encode()),
    }


MALICIOUS = [
    "../escape.txt",
    "a/../../etc/passwd",
    "/absolute",
    "a//double",
    "folder/",
    ".",
    "..",
    "./dot",
    "nul\0byte",
    "x" * 300,
    "ok/" + "é" * 200,
    "%dotdot/escape.txt",  # a real key that looks like an escaped one
]


def test_layout_gives_unsafe_keys_safe_unique_names() -> None:
    keys = [*MALICIOUS, "a", "a/b", "folder"]
    layout = plan_layout(keys)
    paths = list(layout.values())
    assert len(set(paths)) == len(keys)  # one path per key
    dirs = {p[:i] for p in paths for i in range(1, len(p))}
    assert not dirs & set(paths)  # no object's path is also a directory
    for path in paths:
        for name in path:
            assert safe_name(name) == name and len(name) <= 255
    assert layout["folder/"] == (b"folder", b"%empty")
    assert layout["a"][0].startswith(b"a~")  # "a" is also the directory of "a/b"
    assert layout["a/b"] == (b"a", b"b")
    # the real key "%dotdot/escape.txt" keeps its path; the escaped one moves aside
    assert layout["%dotdot/escape.txt"] == (b"%dotdot", b"escape.txt")
    assert layout["../escape.txt"][0] == b"%dotdot"
    assert layout["../escape.txt"][1].startswith(b"escape.txt~")
    assert plan_layout(["../escape.txt"]) == {"../escape.txt": (b"%dotdot", b"escape.txt")}


def test_layout_does_not_depend_on_listing_order() -> None:
    keys = [*MALICIOUS, "a", "a/b", "folder"]
    shuffled = keys[:]
    random.Random(3).shuffle(shuffled)
    assert plan_layout(keys) == plan_layout(shuffled)


def test_malicious_keys_round_trip_and_never_escape_a_target(
    memory_repo: Repository, tmp_path: Path
) -> None:
    source = MemoryBucket("evil", "in")
    for i, key in enumerate(MALICIOUS):
        source.add(key, f"object {i}".encode(), {"Content-Type": "text/plain", "n": str(i)})
    result = backup_bucket(memory_repo, source)
    assert result.stats.errors == []
    assert result.snapshot.source["objects"] == len(MALICIOUS)

    # into a bucket: every key exactly as it was, with its metadata
    copy = MemoryBucket("copy")
    stats = restore_to_bucket(memory_repo, result.snapshot, copy)
    assert stats.errors == [] and stats.objects_restored == len(MALICIOUS)
    assert copy.objects.keys() == source.objects.keys()
    for key, (data, attributes, _) in source.objects.items():
        assert copy.objects[key][:2] == (data, attributes)

    # into a directory: every file inside the target, nothing beside it
    target = tmp_path / "deep" / "target"
    restore_dir(memory_repo, result.snapshot.tree, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["target"]
    files = [p for p in target.rglob("*") if p.is_file()]
    assert len(files) == len(MALICIOUS)
    assert (target / "evil/in/%dotdot/escape.txt").exists()
    contents = sorted(p.read_bytes() for p in files)
    assert contents == sorted(d for d, _, _ in source.objects.values())


def test_keys_obstore_cannot_write_exactly_are_reported(
    memory_repo: Repository, s3_env: S3Server
) -> None:
    seaweedfs = s3_env
    source = MemoryBucket("evil")
    source.add("../up", b"x")
    source.add("fine", b"y")
    snapshot = backup_bucket(memory_repo, source).snapshot
    target = open_bucket(seaweedfs.location(make_bucket(seaweedfs), "dst"))
    stats = restore_to_bucket(memory_repo, snapshot, target)
    assert stats.objects_restored == 1
    assert [k for k, _ in stats.errors] == ["../up"]
    assert "cannot be written exactly" in stats.errors[0][1]


# ---- real buckets -----------------------------------------------------------------------


def test_round_trip_into_another_bucket_and_a_directory(
    local_repo: Repository, s3_env: S3Server, tmp_path: Path
) -> None:
    server = s3_env
    name = make_bucket(server)
    objects = sample_objects(server, name, "live/")
    put(server, name, "elsewhere/not-backed-up", b"outside the prefix")
    result = backup_bucket(local_repo, open_bucket(server.location(name, "live")))
    s = result.stats
    assert s.errors == []
    assert (s.objects_new, s.objects_downloaded) == (len(objects), len(objects))
    assert s.total_bytes_processed == sum(len(b) for b in objects.values())
    assert result.snapshot.paths == [f"s3://{name}/live"]
    assert result.snapshot.source == {
        "kind": "bucket",
        "location": f"s3://{name}/live",
        "endpoint": server.endpoint,
        "bucket": name,
        "prefix": "live",
        "objects": len(objects),
        "bytes": s.total_bytes_processed,
    }

    other = make_bucket(server)
    stats = restore_to_bucket(
        local_repo, result.snapshot, open_bucket(server.location(other, "copy/here"))
    )
    assert stats.errors == [] and stats.objects_restored == len(objects)
    assert bucket_state(server, other, "copy/here/") == bucket_state(server, name, "live/")

    target = tmp_path / "restored"
    restore_dir(local_repo, result.snapshot.tree, target)
    base = target / name / "live"
    for key, body in objects.items():
        path = base / key if key != "a" else next(base.glob("a~*"))
        assert path.read_bytes() == body, key
    assert (base / "a" / "b.txt").is_file()


def test_node_records_etag_time_type_and_metadata(
    memory_repo: Repository, s3_env: S3Server
) -> None:
    server = s3_env
    name = make_bucket(server)
    put(server, name, "doc.txt", b"text", "text/plain", {"owner": "alice"})
    result = backup_bucket(memory_repo, open_bucket(server.location(name)))
    root = tree_nodes(memory_repo, result.snapshot.tree)
    assert [n["name"] for n in root] == [name]
    (node,) = tree_nodes(memory_repo, root[0]["subtree"])
    head = server.client().head_object(Bucket=name, Key="doc.txt")
    assert node["name"] == "doc.txt" and node["size"] == 4
    assert node["mtime_ns"] == int(head["LastModified"].timestamp()) * 10**9
    assert node[OBJECT_FIELD] == {
        "key": "doc.txt",
        "etag": head["ETag"],
        "last_modified_ns": node["mtime_ns"],
        "content_type": "text/plain",
        "headers": {},
        "metadata": {"owner": "alice"},
    }


def test_incremental_backup_downloads_only_changed_objects(
    local_repo: Repository, s3_env: S3Server, tmp_path: Path
) -> None:
    server = s3_env
    name = make_bucket(server)
    objects = sample_objects(server, name)
    bucket = open_bucket(server.location(name))
    first = backup_bucket(local_repo, bucket)
    assert first.stats.objects_downloaded == len(objects)

    same = backup_bucket(local_repo, bucket)
    assert (same.stats.objects_downloaded, same.stats.bytes_downloaded) == (0, 0)
    assert same.stats.objects_unmodified == len(objects)
    assert same.snapshot.parent == first.snapshot.id
    assert same.snapshot.tree == first.snapshot.tree  # unchanged trees are the same blobs
    assert same.data_added == 0

    put(server, name, "a/b.txt", b"changed", "text/plain", {"review": "no"})
    put(server, name, "new/object", b"brand new")
    server.client().delete_object(Bucket=name, Key="index.html")
    changed = backup_bucket(local_repo, bucket)
    s = changed.stats
    assert (s.objects_downloaded, s.objects_new, s.objects_changed) == (2, 1, 1)
    assert s.objects_unmodified == len(objects) - 2  # minus the changed and the deleted one
    assert s.bytes_downloaded == len(b"changed") + len(b"brand new")
    assert changed.snapshot.source["objects"] == len(objects)

    other = make_bucket(server)
    restore_to_bucket(local_repo, changed.snapshot, open_bucket(server.location(other)))
    assert bucket_state(server, other) == bucket_state(server, name)

    forced = backup_bucket(local_repo, bucket, force=True)
    assert forced.stats.objects_downloaded == len(objects)
    assert forced.snapshot.tree == changed.snapshot.tree


class ChangingBucket:
    """The real bucket, changed by another client right after the listing was read."""

    def __init__(self, inner: ObstoreBucket, server: S3Server) -> None:
        self._inner, self._server = inner, server
        self.location, self.bucket = inner.location, inner.bucket
        self.prefix, self.endpoint = inner.prefix, inner.endpoint

    def list(self) -> Iterator[ListedObject]:
        yield from self._inner.list()
        client = self._server.client()
        client.delete_object(Bucket=self.bucket, Key="gone")
        client.put_object(Bucket=self.bucket, Key="rewritten", Body=b"version two, longer")

    def get(self, key: str) -> FetchedObject:
        return self._inner.get(key)

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        attributes: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> None:
        raise AssertionError("not used")

    def create(self) -> None:
        pass


def test_objects_deleted_or_rewritten_during_the_backup(
    memory_repo: Repository, s3_env: S3Server
) -> None:
    server = s3_env
    name = make_bucket(server)
    for key in ("gone", "rewritten", "stays"):
        put(server, name, key, f"version one of {key}".encode())
    listed_etag = server.client().head_object(Bucket=name, Key="rewritten")["ETag"]
    result = backup_bucket(memory_repo, ChangingBucket(open_bucket(server.location(name)), server))
    assert [k for k, _ in result.stats.errors] == ["gone"]
    assert "deleted while the backup ran" in result.stats.errors[0][1]
    assert result.snapshot.source["objects"] == 2

    (top,) = tree_nodes(memory_repo, result.snapshot.tree)
    by_name = {n["name"]: n for n in tree_nodes(memory_repo, top["subtree"])}
    assert sorted(by_name) == ["rewritten", "stays"]
    new_etag = server.client().head_object(Bucket=name, Key="rewritten")["ETag"]
    assert new_etag != listed_etag
    assert by_name["rewritten"][OBJECT_FIELD]["etag"] == new_etag
    assert by_name["rewritten"]["size"] == len(b"version two, longer")


def test_restore_keeps_or_replaces_existing_objects(
    memory_repo: Repository, s3_env: S3Server
) -> None:
    server = s3_env
    name = make_bucket(server)
    put(server, name, "k", b"backed up")
    snapshot = backup_bucket(memory_repo, open_bucket(server.location(name))).snapshot
    put(server, name, "k", b"newer")
    target = open_bucket(server.location(name))
    kept = restore_to_bucket(memory_repo, snapshot, target, overwrite="never")
    assert (kept.objects_restored, kept.objects_skipped) == (0, 1)
    assert server.client().get_object(Bucket=name, Key="k")["Body"].read() == b"newer"
    restore_to_bucket(memory_repo, snapshot, target)
    assert server.client().get_object(Bucket=name, Key="k")["Body"].read() == b"backed up"


def test_a_missing_bucket_is_a_clear_error(memory_repo: Repository, s3_env: S3Server) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        backup_bucket(memory_repo, open_bucket(s3_env.location(fresh_bucket())))
    assert os.environ["AWS_ACCESS_KEY_ID"] == s3_env.access_key


def test_folder_markers_are_skipped_quietly(memory_repo: Repository, s3_env: S3Server) -> None:
    server = s3_env
    name = make_bucket(server)
    put(server, name, "photos/", b"")  # what the AWS console's "Create folder" writes
    put(server, name, "photos/cat.jpg", b"meow")
    put(server, name, "empty-folder/", b"")
    result = backup_bucket(memory_repo, open_bucket(server.location(name)))
    # obstore lists "photos/" as "photos" and cannot fetch it: the marker of a folder with
    # objects in it is skipped (the directory is in the tree anyway); an empty folder's
    # marker is reported, since a deleted empty object looks just the same
    assert result.summary()["folder_markers_skipped"] == 1
    assert result.summary()["objects_new"] == 1
    assert [k for k, _ in result.stats.errors] == ["empty-folder"]
    assert "folder marker 'empty-folder/'" in result.stats.errors[0][1]


class FailingStore(MemoryStore):
    """A repository store whose pack uploads fail."""

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        if key.startswith("data/"):
            raise TransientStoreError(self.location, f"write {key}: disk on fire")
        super().put(key, data, if_absent=if_absent)


def test_a_repository_failure_ends_the_backup_instead_of_skipping_objects() -> None:
    repo = Repository.init(FailingStore(), PASSWORD, CHEAP_KDF, pack_size=256 * 1024)
    source = MemoryBucket()
    for i in range(4):
        source.add(f"o{i}", random.Random(i).randbytes(MiB))
    with pytest.raises(TransientStoreError, match="disk on fire"):
        backup_bucket(repo, source)
    assert repo.list_snapshots() == []


def test_wrong_credentials_are_a_clear_error(
    memory_repo: Repository, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = make_bucket(s3_env)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StoreError, match=r"access denied .* check the credentials"):
        backup_bucket(memory_repo, open_bucket(s3_env.location(name)))


def test_an_azure_container_round_trips(
    memory_repo: Repository, azurite: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """az:// through the same code (Azurite); gs:// has no emulator here."""
    from azure.storage.blob import BlobServiceClient, ContentSettings

    monkeypatch.setenv("AZURE_STORAGE_KEY", azurite.key)
    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    name = fresh_bucket()
    container = service.create_container(name)
    blobs = {"a/b.txt": b"nested", "top.json": b"{}", "empty": b"", "big": os.urandom(9 * MiB)}
    for key, body in blobs.items():
        container.upload_blob(
            f"in/{key}",
            body,
            content_settings=ContentSettings(content_type="text/x-test"),
            metadata={"owner": "alice"},
        )
    source = open_bucket(azurite.location(name, "in"))
    first = backup_bucket(memory_repo, source)
    assert first.stats.errors == [] and first.stats.objects_downloaded == len(blobs)
    again = backup_bucket(memory_repo, source)
    assert (again.stats.objects_downloaded, again.stats.objects_unmodified) == (0, len(blobs))

    stats = restore_to_bucket(
        memory_repo, first.snapshot, open_bucket(azurite.location(name, "out"))
    )
    assert stats.errors == [] and stats.objects_restored == len(blobs)
    for key, body in blobs.items():
        blob = container.get_blob_client(f"out/{key}")
        assert blob.download_blob().readall() == body
        props = blob.get_blob_properties()
        assert props.content_settings.content_type == "text/x-test"
        assert props.metadata == {"owner": "alice"}
