"""``init --object-lock-days``: S3 Object Lock at init, against SeaweedFS (which enforces it)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from safehold.errors import InvalidArgument, NotFound, StoreError
from safehold.repo.repository import Repository
from safehold.storage.s3 import ObjectLock, S3Store
from tests.conftest import CHEAP_KDF, CLI, PASSWORD
from tests.servers import S3Server
from tests.storage.faultproxy import FaultPlan, Request, fault_proxy


def locked_store(server: S3Server, days: int = 3) -> S3Store:
    location = server.location(f"lock-{uuid.uuid4().hex}", "repo")
    store = S3Store(location, access_key_id=server.access_key, secret_access_key=server.secret_key)
    store.enable_object_lock(days)
    return store


def test_init_with_object_lock_makes_every_object_undeletable(seaweedfs: S3Server) -> None:
    store = locked_store(seaweedfs, days=3)
    assert store.object_lock() == ObjectLock("GOVERNANCE", 3)
    repo = Repository.init(store, PASSWORD, CHEAP_KDF)
    store.put("data/ab/abcd", b"pack bytes")
    client = seaweedfs.client()
    bucket = store.s3.bucket
    for key in ("repo/config", f"repo/keys/{repo.key_id}", "repo/data/ab/abcd"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        version = head["VersionId"]
        # deleting the version itself (what would destroy the data) is refused ...
        with pytest.raises(ClientError) as excinfo:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version)
        assert excinfo.value.response["Error"]["Code"] == "AccessDenied"
        # ... and so is overwriting it in place
        with pytest.raises(ClientError):
            client.put_object_retention(
                Bucket=bucket,
                Key=key,
                VersionId=version,
                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": "2000-01-01T00:00:00Z"},
            )
    # prune can ask how long each object is kept
    until = store.retained_until("data/ab/abcd")
    assert until is not None
    assert timedelta(days=2.9) < until - datetime.now(UTC) <= timedelta(days=3)
    # safehold's own delete only hides the object (a delete marker); the locked version
    # stays readable by its version id until the retention ends
    head = client.head_object(Bucket=bucket, Key="repo/data/ab/abcd")
    store.delete("data/ab/abcd")
    kept = client.get_object(Bucket=bucket, Key="repo/data/ab/abcd", VersionId=head["VersionId"])
    assert kept["Body"].read() == b"pack bytes"


def test_object_lock_is_refused_on_a_bucket_made_without_it(seaweedfs: S3Server) -> None:
    location = seaweedfs.location(f"plain-{uuid.uuid4().hex}", "repo")
    store = S3Store(
        location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    store.create()
    assert store.object_lock() is None
    store.put("config", b"c")
    assert store.retained_until("config") is None
    with pytest.raises(NotFound):
        store.retained_until("nope")
    with pytest.raises(StoreError, match="does not support Object Lock") as excinfo:
        store.enable_object_lock(7)
    assert "\n" not in str(excinfo.value)


def test_cli_init_with_object_lock(seaweedfs: S3Server, tmp_path: Path) -> None:
    location = seaweedfs.location(f"lock-{uuid.uuid4().hex}", "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "AWS_"))}
    env.update(seaweedfs.env(), SAFEHOLD_REPOSITORY=location, SAFEHOLD_PASSWORD=PASSWORD.decode())
    cli = CLI(tmp_path, env)
    cli.run("init", "--kdf-memory", "256", "--kdf-iterations", "1", "--object-lock-days", "2")
    client = seaweedfs.client()
    bucket = location.split("/")[2]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("repo/keys/") for k in keys)
    for key in keys:  # config and the key file: locked like everything after them
        assert client.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "GOVERNANCE"
    again = cli.run("init", "--object-lock-days", "2", check=False)
    assert again.returncode != 0
    assert "already exists" in again.stderr.decode()


def test_cli_refuses_object_lock_where_the_store_has_none(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env.update(SAFEHOLD_REPOSITORY=str(tmp_path / "repo"), SAFEHOLD_PASSWORD=PASSWORD.decode())
    proc = CLI(tmp_path / "repo", env).run("init", "--object-lock-days", "5", check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "needs an S3 repository" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists()


def test_lock_days_must_be_positive(seaweedfs: S3Server) -> None:
    store = S3Store(
        seaweedfs.location("never-made", "r"),
        access_key_id=seaweedfs.access_key,
        secret_access_key=seaweedfs.secret_key,
    )
    with pytest.raises(InvalidArgument):
        store.enable_object_lock(0)
    assert not store.exists()  # refused before anything was made


def test_puts_add_a_checksum_when_the_bucket_demands_one(seaweedfs: S3Server) -> None:
    """AWS refuses a PUT without Content-MD5 or x-amz-checksum-* into a bucket with Object
    Lock (SeaweedFS does not): the proxy answers as AWS would, the store turns checksums on."""
    bucket = f"sum-{uuid.uuid4().hex}"
    plan = FaultPlan()
    seen: list[bool] = []

    def aws_rule(request: Request) -> str | None:
        if request.method != "PUT" or "/repo/" not in request.path:
            return None
        seen.append("x-amz-checksum-sha256" in request.headers)
        return None if seen[-1] else "checksum-required"

    plan.rules.append(aws_rule)
    with fault_proxy(seaweedfs.endpoint, plan) as proxy:
        location = S3Server(proxy.endpoint, "", "").location(bucket, "repo")
        store = S3Store(
            location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
        )
        store.create()
        assert not store.checksums
        store.put("keys/k", b"key", if_absent=True)
        store.put("data/00/p", b"pack" * 1000)
        assert store.checksums
        assert store.get("data/00/p") == b"pack" * 1000
    assert seen == [False, True, True]  # one refusal, then every PUT has its checksum


def test_prune_on_a_locked_bucket_says_what_stays(seaweedfs: S3Server, tmp_path: Path) -> None:
    """Deleting under Object Lock only hides: prune still runs, and says until when."""
    location = seaweedfs.location(f"lock-{uuid.uuid4().hex}", "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "AWS_"))}
    env.update(seaweedfs.env(), SAFEHOLD_REPOSITORY=location, SAFEHOLD_PASSWORD=PASSWORD.decode())
    cli = CLI(tmp_path, env)
    cli.run("init", "--kdf-memory", "256", "--kdf-iterations", "1", "--object-lock-days", "2")
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(os.urandom(300_000))
    cli.run("backup", data, "-q")
    cli.run("forget", "latest")
    doc = json.loads(cli.run("--json", "prune").stdout)
    assert doc["packs_deleted"] >= 1
    assert doc["packs_retained_by_object_lock"] == doc["packs_deleted"]
    until = datetime.fromisoformat(doc["retained_until"])
    assert timedelta(days=1) < until - datetime.now(UTC) <= timedelta(days=2, minutes=5)
    assert json.loads(cli.run("--json", "check").stdout)["ok"]
    (data / "g").write_bytes(os.urandom(300_000))
    cli.run("backup", data, "-q")
    cli.run("forget", "latest")
    proc = cli.run("prune")
    assert b"under Object Lock until" in proc.stderr
