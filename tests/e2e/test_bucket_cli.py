"""``safehold backup s3://…`` and ``restore --target s3://…`` as a user runs them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.servers import S3Server


@pytest.fixture
def s3cli(cli: CLI, seaweedfs: S3Server) -> CLI:
    cli.env.update(
        AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key
    )
    cli.init()
    return cli


def make_bucket(server: S3Server, objects: dict[str, bytes]) -> str:
    name = f"t-{uuid.uuid4().hex}"
    client = server.client()
    client.create_bucket(Bucket=name)
    for key, body in objects.items():
        client.put_object(
            Bucket=name, Key=key, Body=body, ContentType="text/plain", Metadata={"k": key[:8]}
        )
    return name


def summary(cli: CLI, *args: str | Path, code: int = 0) -> dict[str, Any]:
    proc = cli.run("--json", *args, check=code == 0)
    assert proc.returncode == code, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    (done,) = [m for m in lines if m["message_type"] == "summary"]
    assert isinstance(done, dict)
    return done


OBJECTS = {"a/b.txt": b"nested", "top.txt": b"top", "empty": b"", "a/c/d.bin": bytes(range(256))}


def test_backup_and_restore_a_bucket(s3cli: CLI, seaweedfs: S3Server, tmp_path: Path) -> None:
    name = make_bucket(seaweedfs, OBJECTS)
    source = seaweedfs.location(name)
    first = summary(s3cli, "backup", source, "--tag", "bucket")
    assert first["objects_new"] == len(OBJECTS) and first["objects_downloaded"] == len(OBJECTS)
    assert first["errors"] == 0 and first["source"] == f"s3://{name}"

    seaweedfs.client().put_object(
        Bucket=name,
        Key="top.txt",
        Body=b"changed",
        ContentType="text/plain",
        Metadata={"k": "top.txt"},
    )
    second = summary(s3cli, "backup", source)
    assert (second["objects_downloaded"], second["objects_unmodified"]) == (1, len(OBJECTS) - 1)

    snapshots = json.loads(s3cli.run("--json", "snapshots").stdout)
    assert [s["paths"] for s in snapshots] == [[f"s3://{name}"]] * 2
    assert snapshots[-1]["source"]["kind"] == "bucket"
    assert snapshots[-1]["source"]["objects"] == len(OBJECTS)

    other = make_bucket(seaweedfs, {})
    restored = summary(s3cli, "restore", "latest", "--target", seaweedfs.location(other, "copy"))
    assert restored["objects_restored"] == len(OBJECTS) and restored["errors"] == 0
    client = seaweedfs.client()
    for key, body in {**OBJECTS, "top.txt": b"changed"}.items():
        got = client.get_object(Bucket=other, Key=f"copy/{key}")
        assert got["Body"].read() == body
        assert (got["ContentType"], got["Metadata"]) == ("text/plain", {"k": key[:8]})

    to_dir = summary(s3cli, "restore", snapshots[0]["id"], "--target", tmp_path / "out")
    assert to_dir["files_restored"] == len(OBJECTS) and to_dir["errors"] == 0
    for key, body in OBJECTS.items():
        assert (tmp_path / "out" / name / key).read_bytes() == body

    listing = s3cli.run("ls", "latest").stdout.decode()
    assert f"/{name}/a/c/d.bin" in listing
    s3cli.run("check", "--read-data")


def test_unreadable_object_means_exit_3_and_the_rest_saved(s3cli: CLI, seaweedfs: S3Server) -> None:
    # SeaweedFS lists a key with a control character in a form obstore cannot fetch back
    name = make_bucket(seaweedfs, {"fine.txt": b"ok"})
    seaweedfs.client().put_object(Bucket=name, Key="bad\x01key", Body=b"unreachable")
    done = summary(s3cli, "backup", seaweedfs.location(name), code=3)
    assert (done["errors"], done["objects_new"]) == (1, 1)


def test_bucket_usage_errors(s3cli: CLI, seaweedfs: S3Server, tmp_path: Path) -> None:
    proc = s3cli.run("backup", "s3://b", str(tmp_path), check=False)
    assert proc.returncode == 1 and b"on its own" in proc.stderr
    proc = s3cli.run("backup", seaweedfs.location(f"t-{uuid.uuid4().hex}"), check=False)
    assert proc.returncode == 1 and b"does not exist" in proc.stderr
    (tmp_path / "f").write_text("x")
    s3cli.run("backup", tmp_path / "f")
    proc = s3cli.run("restore", "latest", "--target", seaweedfs.location("x"), check=False)
    assert proc.returncode == 1 and b"not a bucket backup" in proc.stderr
