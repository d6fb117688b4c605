"""`safehold replicate` as an operator runs it: to S3, to a second region, killed, refused.

The second region is a second SeaweedFS started by this module; the first is the session's.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3
import pytest

from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from tests.archive.helpers import backup as backup_in_process
from tests.archive.helpers import write
from tests.conftest import CHEAP_KDF, CLI, PASSWORD, SAFEHOLD
from tests.e2e.test_cli import (
    assert_same_tree,
    backup,
    json_doc,
    json_lines,
    make_tree,
    random_bytes,
)
from tests.servers import S3Server, run_seaweedfs


@pytest.fixture(scope="module")
def second_region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Another S3 endpoint: the replica's region."""
    with run_seaweedfs(tmp_path_factory.mktemp("second-region")) as server:
        yield server


def s3_cli(cli: CLI, server: S3Server, repo: str | None = None) -> CLI:
    """The same CLI with S3 credentials (both test servers share them)."""
    env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key)
    if repo is not None:
        env["SAFEHOLD_REPOSITORY"] = repo
    return dataclasses.replace(cli, env=env)


def on(cli: CLI, repo: str) -> CLI:
    return dataclasses.replace(cli, env={**cli.env, "SAFEHOLD_REPOSITORY": repo})


def bucket() -> str:
    return f"t-{uuid.uuid4().hex}"


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def restore_newest(cli: CLI, tmp_path: Path, original: Path) -> None:
    target = tmp_path / f"restored-{uuid.uuid4().hex[:6]}"
    cli.run("restore", "latest", "--target", target)
    assert_same_tree(target / original.relative_to("/"), original)


def drop_bucket_objects(server: S3Server, name: str) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])


# ---- copying across store kinds -----------------------------------------------------


def test_local_to_s3_restores_with_the_primary_gone(
    cli: CLI, tmp_path: Path, seaweedfs: S3Server
) -> None:
    cli = s3_cli(cli, seaweedfs)
    data = make_tree(tmp_path / "data")
    cli.init()
    backup(cli, data)
    replica = seaweedfs.location(bucket(), "dr/web1")

    doc = json_doc(cli.run("--json", "replicate", "--to", replica, "--connections", "4"))
    assert doc["ok"] and doc["created_target"] and doc["errors"] == []
    assert list(doc["prefixes"]) == ["keys", "config", "data", "index", "snapshots"]
    assert doc["objects_copied"] == sum(p["copied"] for p in doc["prefixes"].values())
    assert doc["bytes_copied"] > 2_500_000 and doc["mb_per_s"] > 0

    status = json_doc(cli.run("--json", "replicate", "--status", "--to", replica))
    assert status["in_sync"] and status["lag_seconds"] == 0
    assert status["primary_newest"] == status["replica_newest"]
    again = json_doc(cli.run("replicate", "--to", replica, "--json"))
    assert again["objects_copied"] == 0

    subprocess.run(["rm", "-rf", str(cli.repo)], check=True)
    replica_cli = on(cli, replica)
    assert "no errors" in replica_cli.run("check", "--read-data").stdout.decode()
    restore_newest(replica_cli, tmp_path, data)


def test_s3_to_a_second_region(
    cli: CLI, tmp_path: Path, seaweedfs: S3Server, second_region: S3Server
) -> None:
    primary_bucket = bucket()
    primary = seaweedfs.location(primary_bucket, "repo")
    replica = second_region.location(bucket(), "repo")
    cli = s3_cli(cli, seaweedfs, primary)
    data = make_tree(tmp_path / "data")
    cli.init()
    backup(cli, data)

    text = cli.run("replicate", "--status", "--to", replica).stdout.decode()
    assert "replica: no snapshots" in text and "lag: unknown" in text
    assert "missing on the replica: keys 1" in text
    doc = json_doc(cli.run("--json", "replicate", "--to", replica))
    assert doc["ok"] and doc["target"] == replica
    text = cli.run("replicate", "--status", "--to", replica).stdout.decode()
    assert "lag: 0 s" in text and "missing on the replica: nothing" in text

    drop_bucket_objects(seaweedfs, primary_bucket)  # the first region is lost
    replica_cli = on(cli, replica)
    assert "no errors" in replica_cli.run("check", "--read-data").stdout.decode()
    restore_newest(replica_cli, tmp_path, data)


# ---- a killed run -------------------------------------------------------------------


def big_repository(root: Path, tmp_path: Path) -> Path:
    """40 packs of about 1 MiB: enough for a run to be killed in the middle."""
    repo = Repository.init(LocalStore(root), PASSWORD, CHEAP_KDF, pack_size=1 << 20)
    data = tmp_path / "data"
    write(data / "big.bin", random_bytes(40 << 20, seed=7))
    write(data / "small.txt", b"small\n")
    backup_in_process(repo, data)
    return data


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(
                f"replicate ended (exit {proc.returncode}) before it could be killed:"
                f" {log.read_text()}"
            )
        assert time.monotonic() < deadline, "no pack copied within 60 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_killed_run_resumes_and_leaves_only_whole_objects(
    kind: str, cli: CLI, tmp_path: Path, seaweedfs: S3Server
) -> None:
    cli = s3_cli(cli, seaweedfs)
    data = big_repository(cli.repo, tmp_path)
    name = bucket()
    replica = str(tmp_path / "replica") if kind == "local" else seaweedfs.location(name, "r")

    def replica_objects() -> dict[str, bytes]:
        if kind == "local":
            root = tmp_path / "replica"
            files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
            return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}
        client = seaweedfs.client()
        try:
            listed = client.list_objects_v2(Bucket=name, Prefix="r/").get("Contents", [])
        except client.exceptions.NoSuchBucket:
            return {}
        return {
            o["Key"].removeprefix("r/"): client.get_object(Bucket=name, Key=o["Key"])["Body"].read()
            for o in listed
        }

    def packs_copied() -> int:
        if kind == "local":
            found = (tmp_path / "replica" / "data").rglob("*")
            return sum(p.is_file() and not p.name.startswith(".") for p in found)
        try:
            found = seaweedfs.client().list_objects_v2(Bucket=name, Prefix="r/data/")
        except Exception:
            return 0
        return int(found.get("KeyCount", 0))

    log = tmp_path / "replicate.err"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*SAFEHOLD, "replicate", "--to", replica, "--connections", "1", "--json"],
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    kill_when(proc, lambda: packs_copied() >= 3, log)
    assert proc.returncode == -signal.SIGKILL

    half = replica_objects()
    assert not any(k.startswith(("index/", "snapshots/")) for k in half), sorted(half)
    whole = {k: v for k, v in half.items() if not k.rsplit("/", 1)[-1].startswith(".")}
    for key, content in whole.items():  # nothing half-written under a real name
        if key != "config":
            assert blake3.blake3(content).hexdigest() == key.rsplit("/", 1)[-1], key
    assert 3 <= sum(k.startswith("data/") for k in whole) < 41

    doc = json_doc(cli.run("--json", "replicate", "--to", replica))
    assert doc["ok"] and doc["prefixes"]["data"]["skipped"] >= 3
    replica_cli = on(cli, replica)
    assert "no errors, 0 warnings" in replica_cli.run("check", "--read-data").stdout.decode()
    restore_newest(replica_cli, tmp_path, data)


# ---- damage, refusals, deletions, lag ------------------------------------------------


def test_corrupt_pack_is_named_and_the_run_exits_3(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "a.bin", random_bytes(500_000, seed=3))
    cli.init()
    backup(cli, data)
    victim = max((cli.repo / "data").rglob("*"), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[-100] ^= 0x01
    victim.write_bytes(bytes(raw))
    key = victim.relative_to(cli.repo).as_posix()
    replica = tmp_path / "replica"

    proc = cli.run("replicate", "--to", replica, check=False)
    assert proc.returncode == 3
    assert one_error_line(proc) == (
        f"error: {key}: content does not match its name "
        f"(BLAKE3 {blake3.blake3(bytes(raw)).hexdigest()[:16]}…)"
    )
    assert not (replica / key).exists()
    assert (replica / "snapshots").is_dir()  # the rest was copied

    proc = cli.run("--json", "replicate", "--to", replica, check=False)
    assert proc.returncode == 3
    *errors, summary = json_lines(proc)
    assert errors == [{"message_type": "error", "item": key, "error": errors[0]["error"]}]
    assert summary["errors"] == [
        {"object": key, "error": summary["errors"][0]["error"], "corrupt": True}
    ]
    assert summary["ok"] is False


def test_refuses_a_different_repository(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    other = on(cli, str(tmp_path / "other"))
    other.init()
    before = sorted(p.name for p in (tmp_path / "other").rglob("*"))
    proc = cli.run("replicate", "--to", tmp_path / "other", check=False)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert line.startswith(f"safehold: {tmp_path / 'other'} is not a replica of {cli.repo}")
    assert "config differs" in line
    assert sorted(p.name for p in (tmp_path / "other").rglob("*")) == before


def test_delete_and_lag(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "a.txt", b"one\n")
    cli.init()
    first = backup(cli, data, "--time", "2026-03-01T10:00:00Z")["snapshot_id"]
    replica = str(tmp_path / "replica")
    cli.run("replicate", "--to", replica)
    write(data / "b.txt", b"two\n")
    taken = datetime.now(UTC) - timedelta(minutes=45)  # a snapshot the replica lacks
    backup(cli, data, "--time", taken.isoformat())

    status = json_doc(cli.run("--json", "replicate", "--status", "--to", replica))
    assert 2700 <= status["lag_seconds"] < 2760 and not status["in_sync"]
    assert status["missing"]["snapshots"]["count"] == 1
    assert status["missing_by_kind"]["snapshots"] == 1 and status["missing_by_kind"]["packs"] >= 1
    assert "missing on the replica: packs, index, snapshots" in status["behind"]["reason"]
    text = cli.run("replicate", "--status", "--to", replica).stdout.decode()
    assert "lag: 45." in text and "missing on the replica: packs" in text

    cli.run("forget", first)
    doc = json_doc(cli.run("--json", "replicate", "--to", replica))
    assert doc["objects_deleted"] == 0 and (tmp_path / "replica" / "snapshots" / first).exists()
    status = json_doc(cli.run("--json", "replicate", "--status", "--to", replica))
    assert status["lag_seconds"] == 0
    assert status["extra"] == {
        "snapshots": {
            "kind": "snapshots",
            "count": 1,
            "bytes": status["extra"]["snapshots"]["bytes"],
            "names": [f"snapshots/{first}"],
        }
    }

    doc = json_doc(cli.run("--json", "replicate", "--to", replica, "--delete"))
    assert doc["objects_deleted"] == 1 and doc["prefixes"]["snapshots"]["deleted"] == 1
    assert not (tmp_path / "replica" / "snapshots" / first).exists()
    assert not os.listdir(tmp_path / "replica" / "locks")  # its exclusive lock is gone


def test_ctrl_c_stops_cleanly_and_releases_the_lock(cli: CLI, tmp_path: Path) -> None:
    big_repository(cli.repo, tmp_path)
    replica = tmp_path / "replica"

    def packs_copied() -> int:
        found = (replica / "data").rglob("*")
        return sum(p.is_file() and not p.name.startswith(".") for p in found)

    log = tmp_path / "replicate.err"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*SAFEHOLD, "replicate", "--to", replica, "--connections", "1"],
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 60
    while packs_copied() < 2:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert log.read_text().strip().splitlines()[-1] == (
        "safehold: Interrupted; nothing half-done was recorded"
    )
    assert not (replica / "snapshots").exists()
    assert not list((cli.repo / "locks").iterdir())  # the primary's shared lock is released
    assert json_doc(cli.run("--json", "replicate", "--to", replica))["ok"]
