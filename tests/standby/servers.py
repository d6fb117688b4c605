"""etcd, Patroni and HAProxy for the standby tests (../shared/LAB-HA-BROWSER-FUSE.md §1-3).

Every server binds 127.0.0.1 on free ports, writes its log beside its data, and is
stopped by PID (a PID is checked against /proc/PID/cmdline first: PIDs wrap here).
Patroni runs as postgres through the same wrapper as safehold (system python with the
venv's packages), since postgres cannot enter a /root of mode 700.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safehold.dr.standby.processes import listening_pids
from tests.servers import free_ports
from tests.sources.pg_server import write_safehold_wrapper

READY_DEADLINE = 60.0


def require(program: str, package: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise RuntimeError(f"{program} is missing: apt-get install {package} (scripts/test.sh)")
    return found


def _alive(pid: int, needle: str) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def stop_pid(pid: int, needle: str, timeout: float = 20.0) -> None:
    """SIGTERM, wait, SIGKILL: only if ``pid`` still runs a command line with ``needle``."""
    if not _alive(pid, needle):
        return
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, needle):
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_for(
    what: str, check: Any, timeout: float = READY_DEADLINE, log: Path | None = None
) -> Any:
    """Poll ``check()`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{tail}")
        time.sleep(0.1)


# -- etcd -------------------------------------------------------------------------------


@dataclass
class Etcd:
    endpoints: list[str]  # host:port of each member's client URL
    procs: list[subprocess.Popen[bytes]]


@contextmanager
def run_etcd(workdir: Path, members: int = 3) -> Iterator[Etcd]:
    etcd = require("etcd", "etcd-server")
    ports = free_ports(2 * members)
    clients, peers = ports[:members], ports[members:]
    cluster = ",".join(f"e{i}=http://127.0.0.1:{peers[i]}" for i in range(members))
    procs = []
    try:
        for i in range(members):
            log = (workdir / f"etcd-e{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        etcd,
                        "--name",
                        f"e{i}",
                        "--data-dir",
                        str(workdir / f"etcd-e{i}"),
                        "--listen-client-urls",
                        f"http://127.0.0.1:{clients[i]}",
                        "--advertise-client-urls",
                        f"http://127.0.0.1:{clients[i]}",
                        "--listen-peer-urls",
                        f"http://127.0.0.1:{peers[i]}",
                        "--initial-advertise-peer-urls",
                        f"http://127.0.0.1:{peers[i]}",
                        "--initial-cluster",
                        cluster,
                        "--initial-cluster-token",
                        workdir.name,
                        "--initial-cluster-state",
                        "new",
                        "--logger=zap",
                        "--log-outputs=stderr",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        endpoints = [f"127.0.0.1:{p}" for p in clients]
        wait_for("etcd healthy", lambda: all(_etcd_healthy(e) for e in endpoints), 30)
        yield Etcd(endpoints, procs)
    finally:
        for proc in procs:
            stop_pid(proc.pid, "etcd")
            with suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def _etcd_healthy(endpoint: str) -> bool:
    with urllib.request.urlopen(f"http://{endpoint}/health", timeout=2) as resp:
        return bool(json.loads(resp.read()).get("health") == "true")


# -- Patroni ----------------------------------------------------------------------------


def rest(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of Patroni's REST API; (0, {}) when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


@dataclass
class PatroniNode:
    name: str
    config: Path
    pgdata: Path
    port: int
    rest_port: int
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wrapper: Path) -> None:
        with self.log.open("ab") as log:
            # setpriv execs without forking: the PID is Patroni's own (the lab's §2)
            self.proc = subprocess.Popen(
                [
                    "setpriv",
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    str(wrapper),
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.config.parent,
                start_new_session=True,
            )

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, "patroni", timeout=30)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for pid in listening_pids(self.rest_port):  # a Patroni a drill started
            stop_pid(pid, "patroni", timeout=30)
        postmaster = self.postmaster_pid()  # a postgres left by a killed Patroni
        if postmaster is not None:
            stop_pid(postmaster, "postgres")


def patroni_wrapper(path: Path) -> Path:
    """``patroni`` as postgres runs it. ``-S``: no site directories, so the system
    python's dist-packages (Debian's pyOpenSSL, which python-etcd imports when present)
    cannot mix with the venv's cryptography."""
    write_safehold_wrapper(path, module="patroni")
    path.write_text(path.read_text().replace(" -m patroni", " -S -m patroni"))
    return path


# -- HAProxy ----------------------------------------------------------------------------


@dataclass
class HAProxy:
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    socket: Path | None = field(default=None)

    def start(self) -> None:
        haproxy = require("haproxy", "haproxy")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [haproxy, "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def servers_up(self, backend: str) -> list[str]:
        """The servers of ``backend`` HAProxy counts as UP (its runtime API)."""
        assert self.socket is not None
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(f"show servers state {backend}\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        up = []
        for line in data.decode().splitlines()[2:]:
            fields = line.split()
            if len(fields) > 5 and fields[5] == "2":
                up.append(fields[3])
        return up

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, "haproxy")
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


# -- the policy -------------------------------------------------------------------------


@dataclass
class StandbyPolicy:
    path: Path
    ports: dict[str, tuple[int, int]]  # node: (PostgreSQL port, Patroni's REST port)
    write_port: int


def write_standby_policy(
    path: Path,
    base: Path,
    repo: Path,
    password_file: Path,
    etcd: list[str],
    extra: str = "",
    node_extra: str = "",
    tail: str = "",
) -> StandbyPolicy:
    """A policy whose service ``db`` has one postgres source and a standby of nodes pg1
    and pg2 (data in ``base``) on free ports; ``extra``: more keys of the standby table,
    ``node_extra`` of each node (``{name}`` is the node's name), ``tail``: more tables."""
    pg1, rest1, pg2, rest2, write_port, read_port = free_ports(6)
    ports = {"pg1": (pg1, rest1), "pg2": (pg2, rest2)}
    nodes = "".join(
        f'\n[[services.db.standby.nodes]]\nname = "{name}"\nhost = "127.0.0.1"\n'
        f'pgdata = "{base}/{name}"\nport = {port}\nrest_port = {rest_port}\n'
        + node_extra.replace("{name}", name)
        for name, (port, rest_port) in ports.items()
    )
    path.write_text(
        f"""\
[repositories.main]
location = "{repo}"
password_file = "{password_file}"

[services.db]

[[services.db.sources]]
name = "pg"
kind = "postgres"
options = {{ pgdata = "{base}/pg1" }}

[services.db.standby]
etcd = {json.dumps(etcd)}
write_port = {write_port}
read_port = {read_port}
{extra}
{nodes}
{tail}"""
    )
    return StandbyPolicy(path, ports, write_port)
