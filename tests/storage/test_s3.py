"""What only the S3 store does: locations, buckets, credentials, a whole repository on S3.

The conformance suite (test_stores.py) also runs on S3Store; these run against the same
SeaweedFS server, each in a fresh bucket.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument, NotFound, RepositoryMissing, StoreError
from safehold.repo.repository import Repository
from safehold.storage import open_store
from safehold.storage.s3 import S3Location, S3Store
from tests.archive.helpers import assert_same_tree, backup, inside, restore, write
from tests.conftest import CHEAP_KDF, CLI, PASSWORD
from tests.servers import S3Server

AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


def fresh_bucket() -> str:
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, seaweedfs: S3Server) -> S3Server:
    """The standard AWS variables point at the test server, as a user's shell would."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs


# ---- locations ------------------------------------------------------------------------


def test_location_from_the_query_string(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_VARS:
        monkeypatch.setenv(name, "from-env")
    where = S3Location.parse(
        "s3://backups/hosts/web1?endpoint=http://127.0.0.1:8333&region=eu-west-3&path_style=true"
    )
    assert where == S3Location("backups", "hosts/web1", "http://127.0.0.1:8333", "eu-west-3", True)
    plain = S3Location.parse("s3://backups?endpoint=https://s3.example&path_style=false")
    assert (plain.bucket, plain.prefix, plain.path_style) == ("backups", "", False)


def test_location_falls_back_to_the_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    aws = S3Location.parse("s3://backups/repo/")
    assert aws == S3Location("backups", "repo", None, "us-east-1", False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert S3Location.parse("s3://b").region == "ap-south-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    custom = S3Location.parse("s3://backups/repo")
    # a custom endpoint (MinIO, SeaweedFS, Ceph) means path-style addressing by default
    assert custom == S3Location("backups", "repo", "http://127.0.0.1:9000", "eu-central-1", True)


@pytest.mark.parametrize(
    "location",
    ["s3:///prefix", "s3://b/p?bogus=1", "s3://b/p?path_style=maybe", "gs://b/p"],
)
def test_bad_locations_are_refused(location: str) -> None:
    with pytest.raises(InvalidArgument):
        S3Location.parse(location)


def test_open_store_dispatches_s3_locations(seaweedfs: S3Server) -> None:
    location = seaweedfs.location(fresh_bucket(), "repo")
    store = open_store(location)
    assert isinstance(store, S3Store)
    assert store.location == location


# ---- buckets --------------------------------------------------------------------------


def test_create_makes_a_missing_bucket_with_environment_credentials(aws_env: S3Server) -> None:
    bucket = fresh_bucket()
    store = S3Store(f"s3://{bucket}/some/prefix")  # endpoint, region, keys: all from env
    assert not store.exists()
    with pytest.raises(StoreError, match="does not exist"):
        store.get("config")
    store.create()
    assert store.exists()
    aws_env.client().head_bucket(Bucket=bucket)
    store.put("config", b"c")
    listed = aws_env.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["some/prefix/config"]
    store.create()  # idempotent
    assert store.get("config") == b"c"


def test_prefixes_keep_repositories_apart(seaweedfs: S3Server) -> None:
    bucket = fresh_bucket()
    keys = {"access_key_id": seaweedfs.access_key, "secret_access_key": seaweedfs.secret_key}
    one = S3Store(seaweedfs.location(bucket, "one"), **keys)
    two = S3Store(seaweedfs.location(bucket, "one-two"), **keys)
    one.create()
    one.put("keys/a", b"1")
    two.put("keys/b", b"2")
    assert [i.key for i in one.list("")] == ["keys/a"]
    assert [i.key for i in two.list("keys/")] == ["keys/b"]
    with pytest.raises(NotFound):
        two.get("keys/a")


# ---- a whole repository ---------------------------------------------------------------


def test_backup_and_restore_round_trip_on_s3(aws_env: S3Server, tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(source / "a.txt", b"hello\n" * 1000)
    write(source / "sub" / "b.bin", os.urandom(700_000))
    write(source / "sub" / "empty", b"")
    location = f"s3://{fresh_bucket()}/repos/main"
    with pytest.raises(RepositoryMissing):
        Repository.open(open_store(location), PASSWORD)
    repo = Repository.init(open_store(location), PASSWORD, CHEAP_KDF, pack_size=256 * 1024)
    result = backup(repo, source)

    reopened = Repository.open(open_store(location), PASSWORD)
    reopened.load_index()
    assert [s.id for s in reopened.list_snapshots()] == [result.snapshot.id]
    target = tmp_path / "target"
    restore(reopened, result.snapshot.tree, target)
    assert_same_tree(source, inside(target, source))
    packs = [i.key for i in open_store(location).list("data/")]
    assert packs
    assert all(k.startswith("data/") for k in packs)


# ---- credentials ----------------------------------------------------------------------


def test_wrong_credentials_give_a_clear_store_error(seaweedfs: S3Server) -> None:
    location = seaweedfs.location(fresh_bucket(), "repo")
    good = S3Store(
        location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    Repository.init(good, PASSWORD, CHEAP_KDF)
    bad = S3Store(location, access_key_id=seaweedfs.access_key, secret_access_key="wrong")
    with pytest.raises(StoreError, match=r"access denied .*check the credentials"):
        Repository.open(bad, PASSWORD)
    with pytest.raises(StoreError, match=r"access denied"):
        bad.get("config")
    with pytest.raises(StoreError, match=r"access denied"):
        bad.put("keys/x", b"x")


def test_wrong_credentials_in_the_cli_are_one_line_not_a_traceback(
    seaweedfs: S3Server, tmp_path: Path
) -> None:
    location = seaweedfs.location(fresh_bucket(), "repo")
    good = S3Store(
        location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    Repository.init(good, PASSWORD, CHEAP_KDF)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "AWS_"))}
    env.update(
        SAFEHOLD_REPOSITORY=location,
        SAFEHOLD_PASSWORD=PASSWORD.decode(),
        AWS_ACCESS_KEY_ID=seaweedfs.access_key,
        AWS_SECRET_ACCESS_KEY="wrong",
    )
    proc = CLI(tmp_path / "unused", env).run("snapshots", check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert "access denied" in stderr
    assert "check the credentials" in stderr


def test_credentials_from_an_aws_profile(seaweedfs: S3Server, tmp_path: Path) -> None:
    """~/.aws/credentials with AWS_PROFILE, no key in the environment (obstore alone would
    not read the file): init creates the bucket, backup and snapshots work."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
        f"[backup]\naws_access_key_id = {seaweedfs.access_key}\n"
        f"aws_secret_access_key = {seaweedfs.secret_key}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "AWS_"))}
    env.update(
        HOME=str(home),
        AWS_PROFILE="backup",
        SAFEHOLD_REPOSITORY=seaweedfs.location(f"profile-{uuid.uuid4().hex[:8]}", "repo"),
        SAFEHOLD_PASSWORD=PASSWORD.decode(),
    )
    cli = CLI(tmp_path / "unused", env)
    cli.init()
    write(tmp_path / "data" / "f", b"from a profile")
    cli.run("backup", tmp_path / "data", "-q")
    assert b"1 snapshot\n" in cli.run("snapshots").stdout
    env["AWS_PROFILE"] = "default"
    proc = cli.run("snapshots", check=False)
    assert proc.returncode == 1 and b"access denied" in proc.stderr
