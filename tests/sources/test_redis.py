"""Redis with real servers: an RDB backup of a running server, restored into a new one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.sources.mysql_server import free_port


def _cli(port: int, *words: str) -> bytes:
    proc = subprocess.run(["redis-cli", "-p", str(port), *words], capture_output=True, check=True)
    return proc.stdout


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server missing (apt-get install redis-server)")
    port = free_port()
    pid_file = tmp_path / "source.pid"
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            tmp_path,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            pid_file,
            "--logfile",
            tmp_path / "source.log",
        ],
        check=True,
    )
    try:
        deadline = time.monotonic() + 20
        while (
            subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout
            != b"PONG\n"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        _stop(pid_file)


KEYS = ["s", "h", "l", "set", "z", "big", "ttl"]


def _fill(port: int) -> None:
    _cli(port, "SET", "s", "hello wörld")
    _cli(port, "HSET", "h", "a", "1", "b", "2")
    _cli(port, "RPUSH", "l", "x", "y", "z")
    _cli(port, "SADD", "set", "m1", "m2")
    _cli(port, "ZADD", "z", "1.5", "one", "2.5", "two")
    _cli(port, "EVAL", "redis.call('SET', 'big', string.rep('0123456789', 200000))", "0")
    _cli(port, "SET", "ttl", "v", "EX", "3600")


def _values(port: int) -> dict[str, object]:
    return {
        "s": _cli(port, "GET", "s"),
        "h": sorted(_cli(port, "HGETALL", "h").split()),
        "l": _cli(port, "LRANGE", "l", "0", "-1"),
        "set": sorted(_cli(port, "SMEMBERS", "set").split()),
        "z": _cli(port, "ZRANGE", "z", "0", "-1", "WITHSCORES"),
        "big": hashlib.sha256(_cli(port, "GET", "big")).hexdigest(),
        "ttl": _cli(port, "GET", "ttl"),
        "keys": sorted(_cli(port, "KEYS", "*").split()),
    }


def test_rdb_round_trip_through_a_new_server(cli: CLI, redis_port: int, tmp_path: Path) -> None:
    cli.init()
    _fill(redis_port)
    expected = _values(redis_port)
    assert expected["keys"] == sorted(k.encode() for k in KEYS)
    doc = json.loads(cli.run("--json", "redis", "backup", "--port", str(redis_port)).stdout)
    assert doc["source"]["kind"] == "redis" and "db0" in doc["source"]["keyspace"]
    assert doc["total_bytes_processed"] > 10_000  # the big value, LZF-compressed in the RDB
    _cli(redis_port, "FLUSHALL")  # the disaster
    port = free_port()
    target = tmp_path / "restored"
    try:
        doc = json.loads(
            cli.run(
                "--json",
                "redis",
                "restore",
                "latest",
                "--to-dir",
                target,
                "--start",
                "--port",
                str(port),
            ).stdout
        )
        assert doc["keyspace"]["db0"].startswith(f"keys={len(KEYS)},")
        assert _values(port) == expected
        ttl = int(_cli(port, "TTL", "ttl"))
        assert 3000 < ttl <= 3600
    finally:
        _stop(target / "redis.pid")


def test_backup_of_unreachable_server_records_nothing(cli: CLI) -> None:
    cli.init()
    proc = cli.run("redis", "backup", "--port", str(free_port()), check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert json.loads(cli.run("snapshots", "--json").stdout) == []
