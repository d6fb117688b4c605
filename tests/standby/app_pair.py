"""An application pair on 127.0.0.1 for the tests and the bench: two instances of
tests/standby/app_server.py and HAProxy from the configuration ``safehold standby
config`` generates, every process stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from safehold.dr.standby.processes import listening_pids
from tests.servers import free_ports
from tests.standby.servers import HAProxy, stop_pid, wait_for

SERVER = Path(__file__).with_name("app_server.py")
NAMES = ("web1", "web2")


@dataclass
class AppPairLab:
    config: Path  # the policy
    out: Path  # where `standby config` wrote haproxy.cfg
    frontend: int
    ports: dict[str, int]
    pidfiles: dict[str, Path]
    haproxy: HAProxy | None = None
    started: list[int] = field(default_factory=list)  # every instance PID, for the cleanup

    @property
    def repository(self) -> Path:  # not created: a test that stores drills inits it
        return self.config.parent / "repo"

    @property
    def password_file(self) -> Path:
        return self.config.parent / "password"

    def command(self, name: str) -> list[str]:
        return [sys.executable, str(SERVER), name, str(self.ports[name]), str(self.pidfiles[name])]

    def start(self, name: str) -> None:
        self.pidfiles[name].unlink(missing_ok=True)
        proc = subprocess.Popen(self.command(name), start_new_session=True)
        self.started.append(proc.pid)
        wait_for(f"{name} listening", lambda: self.instance_answers(name), 30)

    def pid(self, name: str) -> int:
        return int(self.pidfiles[name].read_text())

    def kill(self, name: str) -> None:
        """SIGKILL, returning once its port is closed (a dying process still accepts)."""
        os.kill(self.pid(name), signal.SIGKILL)
        wait_for(f"{name}'s port closed", lambda: not listening_pids(self.ports[name]), 10)

    def instance_answers(self, name: str) -> bool:
        url = f"http://127.0.0.1:{self.ports[name]}/health"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    def served_by(self) -> str | None:
        """The instance that answers a request through HAProxy (its body), or None."""
        try:
            url = f"http://127.0.0.1:{self.frontend}/"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode().strip()
        except OSError:
            return None

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for pid in self.started:
            stop_pid(pid, "app_server.py", timeout=5)
        for name in NAMES:  # instances a drill started again through start_command
            with suppress(OSError, ValueError):
                stop_pid(self.pid(name), "app_server.py", timeout=5)


def pair_policy(
    workdir: Path, check: str = 'check = "http"\ncheck_path = "/health"', extra: str = ""
) -> AppPairLab:
    """A policy whose service ``web`` has a files source and an application pair web1
    (active) and web2 (passive) on free ports; ``extra``: more keys of the app table."""
    workdir.mkdir(parents=True, exist_ok=True)
    frontend, *ports = free_ports(3)
    lab = AppPairLab(
        workdir / "safehold.toml",
        workdir / "standby",
        frontend,
        dict(zip(NAMES, ports, strict=True)),
        {name: workdir / f"{name}.pid" for name in NAMES},
    )
    instances = "".join(
        f'\n[[services.web.standby.app.instances]]\nname = "{name}"\n'
        f'address = "127.0.0.1:{lab.ports[name]}"\nrole = "{role}"\n'
        f'pidfile = "{lab.pidfiles[name]}"\n'
        f"start_command = {subprocess.list2cmdline(lab.command(name))!r}\n"
        for name, role in zip(NAMES, ("active", "passive"), strict=True)
    )
    lab.password_file.write_text("app pair\n")
    lab.config.write_text(
        f'[repositories.main]\nlocation = "{lab.repository}"\n'
        f'password_file = "{lab.password_file}"\n\n'
        '[services.web]\n[[services.web.sources]]\nname = "conf"\nkind = "files"\n'
        f'options = {{ paths = ["{workdir}"] }}\n\n'
        f"[services.web.standby.app]\nport = {frontend}\n{check}\n{extra}\n{instances}\n"
        f'[daemon]\nstate_dir = "{workdir / "state"}"\nmetrics = "off"\n'
    )
    return lab


@contextmanager
def running_pair(lab: AppPairLab, edit: Callable[[str], str] | None = None) -> Iterator[AppPairLab]:
    """Both instances, then HAProxy from the generated haproxy.cfg (changed by ``edit``,
    for the bench's comparisons), ready when the active serves through it."""
    from tests.service.daemon_helpers import SAFEHOLD, clean_env

    try:
        for name in NAMES:
            lab.start(name)
        subprocess.run(
            [*SAFEHOLD, "standby", "config", "web", "-c", str(lab.config), "--out", str(lab.out)],
            check=True,
            capture_output=True,
            env=clean_env(),
            timeout=60,
        )
        cfg = lab.out / "haproxy.cfg"
        if edit is not None:
            cfg.write_text(edit(cfg.read_text()))
        lab.haproxy = HAProxy(cfg, lab.out / "haproxy.log")
        lab.haproxy.socket = lab.out / "haproxy.sock"
        lab.haproxy.start()
        wait_for("HAProxy sends requests to web1", lambda: lab.served_by() == "web1", 30)
        yield lab
    finally:
        lab.stop()
