"""A policy with the dashboard on, run by a real daemon (or ``safehold serve``) over a real
repository, and a small HTTP client for its API.

The policy carries secrets on purpose: a repository password, a webhook URL with a token
in the environment, and a PostgreSQL source whose DSN has a user's password (the source
points at a closed port, so its backups fail and their errors are recorded), so that the
tests can look for them in everything served."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from tests.policy import daemon_table, files_source, repository_table
from tests.servers import free_port
from tests.service.daemon_helpers import SAFEHOLD, DaemonRun, clean_env, init_repo, write_password

VIEWER_TOKEN = "viewer-5be1c0a7d3f84e2a9c"
OPERATOR_TOKEN = "operator-61f0e2b4a8c94d7f"
VIEWER_USER, VIEWER_PASSWORD = "ann", "ann-correct-horse"
WEBHOOK_SECRET = "hooktoken-9f3e1d2c"
DSN_SECRET = "dsnpass-7a6b5c4d"


@dataclass
class Site:
    """One policy and the process serving it."""

    base: Path
    config: Path
    port: int
    url: str
    env: dict[str, str]
    password: str
    daemon: DaemonRun | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    secrets: list[str] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # trusts the server's self-signed certificate

    def get(
        self, path: str, token: str | None = VIEWER_TOKEN, method: str = "GET", **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; errors are answers too."""
        request = urllib.request.Request(self.url + path, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in headers.items():
            request.add_header(name.replace("_", "-"), value)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, token: str | None = VIEWER_TOKEN) -> Any:
        status, _, body = self.get(path, token)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def cli_json(self, *args: str) -> Any:
        proc = subprocess.run(
            [*SAFEHOLD, "--json", *args, "-c", str(self.config)],
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        assert proc.returncode in (0, 5), proc.stderr.decode()
        return json.loads(proc.stdout)

    def drill(self, service: str) -> None:
        """``safehold drill SERVICE``: a sandboxed recovery, its report stored."""
        proc = subprocess.run(
            [*SAFEHOLD, "--json", "drill", service, "-c", str(self.config)],
            capture_output=True,
            env=self.env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]

    def cli_lines(self, *args: str) -> list[Any]:
        """A repository command's ``--json`` lines (``ls``), with the policy's repository."""
        proc = subprocess.run(
            [
                *SAFEHOLD,
                "--json",
                "--repo",
                str(self.base / "repo"),
                "--password-file",
                str(self.base / "password"),
                *args,
            ],
            capture_output=True,
            env=self.env,
            timeout=120,
            check=True,
        )
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _, _ = self.get("/api/v1/status")
                if status == 200:
                    return
            except OSError:
                pass
            if self.process is not None and self.process.poll() is not None:
                break
            daemon = self.daemon.process if self.daemon is not None else None
            if daemon is not None and daemon.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the dashboard did not come up:\n{self.text()}")

    def text(self) -> str:
        if self.daemon is not None:
            return self.daemon.text()
        return self.log.read_text(errors="replace") if self.log else ""

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.process is not None:
            self.daemon.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def make_site(base: Path, rpo: str = "1h", extra_daemon: str = "") -> Site:
    """An initialised repository with a file tree, tokens in files, and the policy."""
    base.mkdir(parents=True, exist_ok=True)
    password = write_password(base / "password")
    init_repo(str(base / "repo"), password)
    data = base / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (base / "viewer.token").write_text(VIEWER_TOKEN + "\n")
    (base / "operator.token").write_text(OPERATOR_TOKEN + "\n")
    hashed = bcrypt.hashpw(VIEWER_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (base / "viewers.htpasswd").write_text(f"# htpasswd -B\n{VIEWER_USER}:{hashed}\n")
    port = free_port()
    config = base / "safehold.toml"
    config.write_text(
        repository_table(base / "repo", password, base / "replica")
        + f'[services.app]\nobjectives.rpo = "{rpo}"\n'
        + files_source("app", data, backup="0 0 1 1 *")
        + f"""
[services.db]
[[services.db.sources]]
name = "pg"
kind = "postgres"
options.method = "basebackup"
options.dsn = "postgresql://backup:{DSN_SECRET}@127.0.0.1:1/app"
schedules.full = "0 0 1 1 *"
schedules.logs = "off"

"""
        + daemon_table(
            base / "state",
            metrics="off",
            http=f"127.0.0.1:{port}",
            status_interval="1s",
            retries=0,
            stop_grace="5s",
        )
        + f"""{extra_daemon}
[daemon.check]
schedule = "off"
[daemon.retention]
schedule = "off"
[daemon.http_auth]
viewer_token_file = "{base / "viewer.token"}"
operator_token_file = "{base / "operator.token"}"
viewer_password_file = "{base / "viewers.htpasswd"}"
[[daemon.alerts.webhooks]]
url_env = "DASHBOARD_TEST_WEBHOOK"
timeout = "1s"
"""
    )
    env = clean_env(DASHBOARD_TEST_WEBHOOK=f"http://127.0.0.1:1/hooks/{WEBHOOK_SECRET}")
    return Site(
        base,
        config,
        port,
        f"http://127.0.0.1:{port}",
        env,
        password.read_text(),
        secrets=[
            password.read_text(),
            WEBHOOK_SECRET,
            DSN_SECRET,
            VIEWER_TOKEN,
            OPERATOR_TOKEN,
            VIEWER_PASSWORD,
        ],
    )


def start_daemon(site: Site) -> Site:
    site.daemon = DaemonRun(site.config, site.base / "state", env=site.env).start()
    site.wait_up()
    return site


def start_serve(site: Site, *args: str) -> Site:
    site.log = site.base / f"serve-{time.monotonic_ns()}.log"
    with open(site.log, "wb") as out:
        site.process = subprocess.Popen(
            [*SAFEHOLD, "serve", "-c", str(site.config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=site.env,
        )
    return site


def wait_for(what: str, condition: Any, timeout: float = 60, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
