"""The daemon protecting a service end to end, with real servers: a PostgreSQL cluster
(full and incremental backups, WAL archived by archive_command), a directory, a replica on
SeaweedFS; a webhook receiver records the alerts and /metrics is scraped.

The primary store then fails (its directory becomes unreadable to the daemon's user, as a
lost mount would): jobs fail, ``safehold status`` reports the RPO breach and exits 5, the
webhook receives the job failure and the breach; once the store is back the archive
catches up, backups succeed, the breach clears and the webhook receives the recovery."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from safehold.service.history import JobHistory, JobRun
from tests.servers import S3Server, free_port
from tests.service.daemon_helpers import SAFEHOLD, clean_env
from tests.sources.pg_fixtures import PgEnv, pg_env  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(600)

RPO_SECONDS = 20


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every JSON document POSTed to it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        received = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def has(self, status: str, alert: str, subject: str | None = None, after: int = 0) -> bool:
        return any(
            e["status"] == status
            and e["alert"] == alert
            and (subject is None or e["subject"] == subject)
            for e in self.events[after:]
        )

    def open_alerts(self) -> set[str]:
        """Alert keys whose last event is "firing"."""
        state: dict[str, str] = {}
        for event in self.events:
            state[event["key"]] = event["status"]
        return {key for key, status in state.items() if status == "firing"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def chown_postgres(*paths: Path) -> None:
    subprocess.run(["chown", "-R", "postgres:postgres", *map(str, paths)], check=True)


def start_daemon(
    wrapper: Path, config: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``safehold daemon -c CONFIG`` as postgres (who owns the repository), output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(wrapper), "daemon", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait(what: str, condition: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-6000:]}")


def runs(state: Path) -> list[JobRun]:
    if not (state / "history.sqlite").exists():
        return []
    h = JobHistory(state / "history.sqlite", readonly=True)
    try:
        return h.runs(limit=1000)
    except sqlite3.OperationalError:  # the daemon created the file, not yet its tables
        return []
    finally:
        h.close()


def succeeded(state: Path, job: str) -> int:
    return sum(1 for r in runs(state) if r.job == job and r.outcome == "success")


def status(config: Path, env: dict[str, str], wrapper: Path) -> tuple[int, dict[str, Any]]:
    """``safehold status`` as the daemon's user sees the repository."""
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(wrapper), "--json", "status", "-c", str(config)],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode in (0, 5), proc.stderr.decode()
    return proc.returncode, json.loads(proc.stdout)


def source_doc(doc: dict[str, Any], name: str) -> dict[str, Any]:
    for service in doc["services"]:
        for source in service["sources"]:
            if source["source"] == name:
                return dict(source)
    raise KeyError(name)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_daemon_protects_postgres_files_and_replica_and_alerts_on_a_store_outage(
    pg_env: PgEnv,  # noqa: F811
    seaweedfs: S3Server,
    receiver: Receiver,
) -> None:
    base = pg_env.base
    uploads = base / "uploads"
    uploads.mkdir()
    (uploads / "avatar.png").write_bytes(os.urandom(50_000))
    state = base / "state"
    state.mkdir()
    chown_postgres(uploads, state)
    bucket = f"dr-{time.monotonic_ns()}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    replica = seaweedfs.location(bucket, "replica")
    cluster = pg_env.cluster("daemon", archive_timeout="2s")
    metrics_port = free_port()
    config = base / "safehold.toml"
    config.write_text(
        f"""
[repositories.main]
location = "{pg_env.repo}"
password_file = "{pg_env.password_file}"
[[repositories.main.replicas]]
location = "{replica}"

[services.app]
objectives.rpo = "{RPO_SECONDS}s"

[[services.app.sources]]
name = "db"
kind = "postgres"
options.pgdata = "{cluster.pgdata}"
options.dsn = "{cluster.conninfo}"
schedules.full = "0 * * * * *"
schedules.incremental = "*/15 * * * * *"

[[services.app.sources]]
name = "uploads"
kind = "files"
options.paths = ["{uploads}"]
schedules.backup = "*/5 * * * * *"

[daemon]
state_dir = "{state}"
metrics = "127.0.0.1:{metrics_port}"
status_interval = "2s"
retries = 0
stop_grace = "20s"
[daemon.check]
schedule = "off"
[daemon.retention]
schedule = "off"
[[daemon.alerts.webhooks]]
url = "{receiver.url}"
"""
    )
    env = clean_env(**seaweedfs.env())
    log = base / "daemon.log"
    stop_writing = threading.Event()

    def write_rows() -> None:
        cluster.sql("CREATE TABLE IF NOT EXISTS ticks (at timestamptz DEFAULT now())")
        while not stop_writing.is_set():
            cluster.sql("INSERT INTO ticks DEFAULT VALUES")
            stop_writing.wait(0.5)

    writer = threading.Thread(target=write_rows, daemon=True)
    writer.start()
    daemon = start_daemon(pg_env.wrapper, config, log, env)
    try:
        # -- healthy: every job runs, the replica follows, status is within objectives --
        wait(
            "backups of both sources and a replication",
            lambda: (
                succeeded(state, "app/uploads backup") >= 2
                and succeeded(state, "app/db incremental") + succeeded(state, "app/db full") >= 1
                and succeeded(state, f"replicate main to {replica}") >= 1
            ),
            180,
            log,
        )
        # right after a base backup its own time is the newest point; WAL archived after
        # it (archive_timeout 2 s, commits twice a second) takes over within seconds
        seen: list[tuple[int, dict[str, Any]]] = []

        def from_wal() -> bool:
            seen.append(status(config, env, pg_env.wrapper))
            return source_doc(seen[-1][1], "db")["recovery_point_from"] == "archived WAL"

        wait("a recovery point from archived WAL", from_wal, 30, log)
        code, doc = seen[-1]
        db = source_doc(doc, "db")
        assert code == 0, json.dumps(doc, indent=1)
        assert db["recovery_point"] > db["last_backup"]  # WAL newer than the base backup

        def exposure() -> list[float]:
            return [
                v
                for (name, labels), v in scrape(f"http://127.0.0.1:{metrics_port}/metrics").items()
                if name == "safehold_source_rpo_exposure_seconds" and ("source", "db") in labels
            ]

        wait("the exposure metric", lambda: bool(exposure()), 30, log)
        assert 0 <= exposure()[0] < RPO_SECONDS

        # -- the store fails -----------------------------------------------------------
        wait(
            "the first backups to resolve every alert", lambda: not receiver.open_alerts(), 60, log
        )
        before = len(receiver.events)
        pg_env.repo.chmod(0o000)
        wait(
            "the RPO breach and a job failure alert",
            lambda: (
                receiver.has("firing", "rpo_exceeded", "app", after=before)
                and receiver.has("firing", "job_failed", after=before)
            ),
            120,
            log,
        )
        code, doc = status(config, env, pg_env.wrapper)
        assert code == 5
        assert not doc["services"][0]["within_objectives"]
        breach = next(e for e in receiver.events[before:] if e["alert"] == "rpo_exceeded")
        assert "safehold status --config" in breach["command"]
        failed = next(e for e in receiver.events[before:] if e["alert"] == "job_failed")
        assert failed["error"] and "safehold jobs" in failed["command"]

        # -- the store is back -----------------------------------------------------------
        pg_env.repo.chmod(0o700)
        wait(
            "the breach to clear",
            lambda: receiver.has("resolved", "rpo_exceeded", "app", after=before),
            150,
            log,
        )
        code, doc = status(config, env, pg_env.wrapper)
        assert code == 0, json.dumps(doc, indent=1)
        outage = receiver.events[before:]
        assert [e["status"] for e in outage if e["alert"] == "rpo_exceeded"] == [
            "firing",
            "resolved",
        ]  # once, not at each status evaluation
    finally:
        stop_writing.set()
        pg_env.repo.chmod(0o700)
        pid = int((state / "daemon.lock").read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        assert daemon.wait(90) == 0, log.read_text()[-4000:]

    # the replica is a complete repository holding both sources' backups
    replica_args = ["--repo", replica, "--password-file", str(pg_env.password_file), "--json"]
    snaps = json.loads(
        subprocess.run(
            [*SAFEHOLD, *replica_args, "snapshots"], capture_output=True, env=env, check=True
        ).stdout
    )
    tags = {t for s in snaps for t in s["tags"]}
    assert {"source=app/db", "source=app/uploads"} <= tags
    check = subprocess.run(
        [*SAFEHOLD, *replica_args, "check"], capture_output=True, env=env, check=False
    )
    assert check.returncode == 0, check.stderr.decode()
    assert "daemon stopped" in log.read_text()


def test_wal_reaches_the_replica_continuously_without_any_backup(
    pg_env: PgEnv,  # noqa: F811
    seaweedfs: S3Server,
) -> None:
    """With ``logs = "continuous"`` a segment archived on the primary is on the replica
    within seconds, while the replica's full replication (yearly here) and the backups
    (off) never run."""
    state = pg_env.base / "state-logs"
    state.mkdir()
    chown_postgres(state)
    bucket = f"logs-{time.monotonic_ns()}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=bucket)
    replica = seaweedfs.location(bucket, "replica")
    cluster = pg_env.cluster("logs")
    system_id = str(cluster.sql("SELECT system_identifier FROM pg_control_system()")[0][0])
    config = pg_env.base / "logs.toml"
    config.write_text(
        f"""
[repositories.main]
location = "{pg_env.repo}"
password_file = "{pg_env.password_file}"
[[repositories.main.replicas]]
location = "{replica}"
schedule = "0 0 1 1 *"
logs = "continuous"

[[services.app.sources]]
name = "db"
kind = "postgres"
options.pgdata = "{cluster.pgdata}"
options.dsn = "{cluster.conninfo}"
schedules = {{ full = "off", incremental = "off" }}

[daemon]
state_dir = "{state}"
metrics = "off"
[daemon.check]
schedule = "off"
[daemon.retention]
schedule = "off"
"""
    )
    log = pg_env.base / "daemon-logs.log"

    def on_replica(name: str) -> bool:
        found = client.list_objects_v2(Bucket=bucket, Prefix=f"replica/wal/{system_id}/")
        return any(o["Key"].endswith(name) for o in found.get("Contents", []))

    daemon = start_daemon(pg_env.wrapper, config, log, clean_env(**seaweedfs.env()))
    try:
        wait("the log follower", lambda: "replicate logs of main" in log.read_text(), 60, log)
        for _ in range(2):  # the follower's first poll, then one that finds a new segment
            cluster.sql("CREATE TABLE IF NOT EXISTS t (n int); INSERT INTO t VALUES (1)")
            name = cluster.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
            cluster.wait_archived()
            archived = time.monotonic()
            wait(f"{name} on the replica", lambda name=name: on_replica(name), 60, log)
            took = time.monotonic() - archived
            print(f"{name}: on the replica {took:.1f} s after it was archived")
        jobs = {r.job for r in runs(state)}
        assert jobs == {f"replicate logs of main to {replica}"}, jobs  # no backup, no replicate
    finally:
        pid = int((state / "daemon.lock").read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        assert daemon.wait(90) == 0, log.read_text()[-4000:]
