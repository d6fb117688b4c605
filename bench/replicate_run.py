"""Replication throughput on SeaweedFS: `safehold replicate` against plain copies.

Two `weed mini` servers on loopback stand for two regions. The source repository is a
real one (init'ed, opened with its password) to which random 16 MiB objects are added
under data/ with their BLAKE3 as the name, as packs are: replicate copies and verifies
them exactly like packs (it never decrypts a pack).

Phases, each timed as one child process (`safehold replicate --json`) or in-process
(the boto3 baselines, 8 threads like --connections 8):

- local → S3:   replicate          vs boto3 put_object of the same files
- S3 → S3:      replicate A → B    vs boto3 get_object + put_object A → B (aws s3 sync-like)
- S3 → S3:      boto3 copy_object within server A (server-side copy; no bytes through us)

    .venv/bin/python bench/replicate_run.py --mib 512 [--connections 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import S3Server, run_seaweedfs  # noqa: E402

from safehold.repo.keys import KdfParams  # noqa: E402
from safehold.repo.repository import Repository  # noqa: E402
from safehold.storage import LocalStore  # noqa: E402

PASSWORD = "bench password"
OBJECT = 16 << 20


def make_source(root: Path, mib: int) -> list[Path]:
    store = LocalStore(root)
    Repository.init(store, PASSWORD.encode(), KdfParams(memory=256, iterations=1, parallelism=1))
    files = []
    for _ in range(mib * (1 << 20) // OBJECT):
        data = os.urandom(OBJECT)
        name = blake3.blake3(data).hexdigest()
        store.put(f"data/{name[:2]}/{name}", data)
        files.append(root / "data" / name[:2] / name)
    return files


def replicate(source: str, target: str, server: S3Server, connections: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAFEHOLD_"))}
    env.update(
        SAFEHOLD_PASSWORD=PASSWORD,
        SAFEHOLD_REPOSITORY=source,
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
    )
    cmd = [
        sys.executable, "-m", "safehold", "--json", "replicate",
        "--to", target, "--connections", str(connections),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    doc: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return {
        "bytes": doc["bytes_copied"],
        "seconds": wall,
        "inner_seconds": doc["seconds"],
        "cpu": cpu,
    }


def boto_pool(work: Any, items: list[Any], connections: int) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds."""
    cpu = time.process_time()
    started = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(work, items))
    return time.monotonic() - started, time.process_time() - cpu


def baseline_upload(server: S3Server, files: list[Path], connections: int) -> dict[str, Any]:
    client, bucket = server.client(), f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)

    def put(path: Path) -> None:
        client.put_object(Bucket=bucket, Key=path.name, Body=path.read_bytes())

    seconds, cpu = boto_pool(put, files, connections)
    return {"bytes": sum(p.stat().st_size for p in files), "seconds": seconds, "cpu": cpu}


def baseline_s3_to_s3(
    a: S3Server, b: S3Server, bucket: str, prefix: str, connections: int
) -> dict[str, Any]:
    src, dst, target = a.client(), b.client(), f"b-{uuid.uuid4().hex[:12]}"
    dst.create_bucket(Bucket=target)
    keys = [
        (o["Key"], o["Size"])
        for page in src.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]

    def copy(item: tuple[str, int]) -> None:
        body = src.get_object(Bucket=bucket, Key=item[0])["Body"].read()
        dst.put_object(Bucket=target, Key=item[0], Body=body)

    seconds, cpu = boto_pool(copy, keys, connections)
    return {"bytes": sum(n for _, n in keys), "seconds": seconds, "cpu": cpu}


def baseline_server_copy(a: S3Server, bucket: str, prefix: str, connections: int) -> dict[str, Any]:
    client, target = a.client(), f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=target)
    keys = [
        (o["Key"], o["Size"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]

    def copy(item: tuple[str, int]) -> None:
        client.copy_object(
            Bucket=target, Key=item[0], CopySource={"Bucket": bucket, "Key": item[0]}
        )

    seconds, cpu = boto_pool(copy, keys, connections)
    return {"bytes": sum(n for _, n in keys), "seconds": seconds, "cpu": cpu}


def show(name: str, result: dict[str, Any]) -> None:
    mbs = result["bytes"] / 1e6 / result["seconds"]
    inner = (
        f", inside replicate {result['inner_seconds']:.2f} s" if "inner_seconds" in result else ""
    )
    print(
        f"{name:36s} {result['bytes'] / 2**20:5.0f} MiB {result['seconds']:6.2f} s"
        f" {mbs:6.1f} MB/s (client CPU {result['cpu']:.2f} s{inner})",
        flush=True,
    )


def one_round(run: int, primary: str, files: list[Path], a: S3Server, b: S3Server, n: int) -> None:
    """Odd rounds run the baselines first, so neither side always meets a warm server."""
    bucket = f"r{run}-{uuid.uuid4().hex[:8]}"
    on_a, on_b = a.location(bucket, "repo"), b.location(f"{bucket}-b", "repo")
    local_s3: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("replicate local -> S3", lambda: replicate(primary, on_a, a, n)),
        ("boto3 put local -> S3", lambda: baseline_upload(a, files, n)),
    ]
    s3_s3: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("replicate S3 -> S3 (A -> B)", lambda: replicate(on_a, on_b, a, n)),
        ("boto3 get+put S3 -> S3 (A -> B)", lambda: baseline_s3_to_s3(a, b, bucket, "repo/", n)),
    ]
    if run % 2:
        local_s3.reverse()
        s3_s3.reverse()
    for name, phase in [*local_s3, *s3_s3]:
        show(f"[{run}] {name}", phase())
    show(f"[{run}] boto3 copy_object (within A)", baseline_server_copy(a, bucket, "repo/", n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replbench-") as tmp:
        work = Path(tmp)
        files = make_source(work / "primary", args.mib)
        with run_seaweedfs(work / "a") as a, run_seaweedfs(work / "b") as b:
            for run in range(args.repeat):
                one_round(run, str(work / "primary"), files, a, b, args.connections)


if __name__ == "__main__":
    main()
