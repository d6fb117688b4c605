"""``safehold standby config``: files checked by ``haproxy -c`` and ``patroni
--validate-config`` against a real etcd; a refused file is one line and nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SAFEHOLD
from tests.servers import free_ports
from tests.standby.servers import Etcd, run_etcd, write_standby_policy


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with run_etcd(tmp_path_factory.mktemp("etcd"), members=1) as server:
        yield server


def policy(tmp_path: Path, etcd: list[str], listen: str = "127.0.0.1") -> Path:
    path = tmp_path / "safehold.toml"
    repo, password = tmp_path / "repo", tmp_path / "password"
    write_standby_policy(path, tmp_path, repo, password, etcd, f'listen = "{listen}"')
    return path


def standby_config(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    return subprocess.run(
        [*SAFEHOLD, "standby", "config", *map(str, args)], capture_output=True, text=True, env=env
    )


def test_config_writes_files_that_haproxy_and_patroni_accept(tmp_path: Path, etcd: Etcd) -> None:
    out = tmp_path / "out"
    proc = standby_config("db", "-c", policy(tmp_path, etcd.endpoints), "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    files = {Path(f["path"]).name: f for f in json.loads(proc.stdout)["files"]}
    assert set(files) == {"patroni-pg1.yml", "patroni-pg2.yml", "haproxy.cfg"}
    assert all(f["checked"] for f in files.values()), files
    assert files["haproxy.cfg"]["checker"] == "haproxy -c"
    haproxy = (out / "haproxy.cfg").read_text()
    assert f"stats socket {out.resolve()}/haproxy.sock" in haproxy
    assert "default-server inter 1s downinter 200ms fall 2 rise 1" in haproxy
    node = (out / "patroni-pg2.yml").read_text()
    assert json.loads(node[node.index("{") :])["etcd3"]["hosts"] == etcd.endpoints


def test_an_unreachable_etcd_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    out = tmp_path / "out"
    proc = standby_config("db", "-c", policy(tmp_path, [dead]), "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"refused {out}/patroni-pg1.yml" in proc.stderr
    assert f"{dead} is not reachable" in proc.stderr
    assert list(out.iterdir()) == []


def test_a_config_haproxy_refuses_is_one_line(tmp_path: Path, etcd: Etcd) -> None:
    out = tmp_path / "out"
    path = policy(tmp_path, etcd.endpoints, listen="no-such-host.invalid")
    proc = standby_config("db", "-c", path, "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"safehold: haproxy -c refused {out}/haproxy.cfg: [ALERT]")
    assert list(out.iterdir()) == []
