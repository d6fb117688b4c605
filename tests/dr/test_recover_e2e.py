"""``safehold recover`` end to end with real servers: a service of PostgreSQL 15 (WAL
archived), an uploads directory, a config directory, a SQLite file and Redis, protected by
the daemon on second-level schedules (and consistent cuts every 3 s) while a writer commits
a row and then writes its upload file, again and again.

One module-wide service, in this order: an accidental DROP TABLE; bad input, against the
live service (each one line, the right exit code, the live service untouched); then
everything is wiped and ``recover --latest`` brings the service back onto new directories
and ports, checked by an oracle (every upload file has its row, every row older than the
uploads' snapshot has its file, nothing newer than the recovery point); ``--to-time`` just
before the DROP brings the table back exactly; ``--at-cut`` brings files and rows back
from the daemon's cut.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safehold.service.history import JobRun
from tests.policy import (
    daemon_table,
    files_source,
    postgres_source,
    repository_table,
    run_job,
    sqlite_source,
)
from tests.servers import free_port
from tests.service.daemon_helpers import SAFEHOLD, DaemonRun, clean_env
from tests.sources.pg_fixtures import PgEnv, pg_env  # noqa: F401  (the fixture)
from tests.sources.pg_server import PgCluster
from tests.sources.test_redis import _stop as stop_redis

pytestmark = pytest.mark.timeout(900)

REDIS_SOURCE = """
[[services.app.sources]]
name = "cache"
kind = "redis"
options = {{ host = "127.0.0.1", port = {redis_port} }}
schedules.backup = "*/2 * * * * *"

"""
RECOVERY = """
[services.app.recovery]
cuts = "*/3 * * * * *"
safehold_command = "{wrapper}"
start = ["test -f {{config.path}}/app.conf"]
timeout = "5m"
[services.app.recovery.sources.cache]
dir = "{redis_dir}"

[[services.app.recovery.checks]]
name = "items readable"
sql = "SELECT count(*) >= 0 FROM items"
source = "db"
expect = "t"
[[services.app.recovery.checks]]
tcp = "127.0.0.1:{{cache.port}}"
[[services.app.recovery.checks]]
command = "test -s {{meta.path}}"
"""


@dataclass
class Service:
    env: PgEnv
    live: PgCluster
    base: Path
    config: Path
    redis_pid: Path
    redis_port: int
    dropped_at: datetime | None = None
    before_drop: datetime | None = None
    accounts: list[tuple[Any, ...]] = field(default_factory=list)
    cut: dict[str, Any] = field(default_factory=dict)
    recovered: list[tuple[Path, int]] = field(default_factory=list)  # pgdata, port to stop

    @property
    def uploads(self) -> Path:
        return self.base / "live" / "uploads"

    def safehold(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*SAFEHOLD, *args], capture_output=True, text=True, env=clean_env(), timeout=600
        )
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    def job(self, action: str, target: str, schedule: str) -> str:
        """The daemon's command for one job, run as the daemon runs it; its stdout."""
        return run_job(self.config, action, target, schedule)

    def backup(self, source: str, schedule: str = "backup") -> None:
        self.job("backup", f"app/{source}", schedule)

    def recover(self, *args: str) -> tuple[int, dict[str, Any], str]:
        proc = self.safehold("--json", "recover", "app", "-c", str(self.config), *args)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        summary = next((d for d in lines if d.get("message_type") == "summary"), {})
        for src in summary.get("sources", []):
            if src["kind"] == "postgres" and src["started"]:
                self.recovered.append((Path(src["target"]), src["port"]))
        return proc.returncode, summary, proc.stderr


class Writer:
    """Commits a row, then writes its upload file, every few milliseconds."""

    def __init__(self, live: PgCluster, uploads: Path) -> None:
        self.live, self.uploads = live, uploads
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.live.connect() as conn:
            while not self.stop.is_set():
                self.count += 1
                row = conn.execute(
                    "INSERT INTO items VALUES (%s, clock_timestamp()) RETURNING t", (self.count,)
                ).fetchone()
                assert row is not None
                (self.uploads / f"{self.count}.txt").write_text(row[0].isoformat())
                time.sleep(0.01)


def _start_redis(directory: Path, port: int) -> Path:
    pid = directory / "redis.pid"
    subprocess.run(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no", "--daemonize", "yes", "--pidfile", pid,
         "--logfile", directory / "redis.log"],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout != (
        b"PONG\n"
    ):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return pid


@pytest.fixture(scope="module")
def service(pg_env: PgEnv) -> Iterator[Service]:  # noqa: F811
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server missing (apt-get install redis-server)")
    base = pg_env.base / "app"
    live = base / "live"
    for d in (live / "uploads", live / "config", live / "redis"):
        d.mkdir(parents=True)
    (live / "config" / "app.conf").write_text("workers = 4\n")
    with sqlite3.connect(live / "meta.db") as db:
        db.execute("CREATE TABLE settings (k TEXT PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO settings VALUES ('plan', 'gold')")
    cluster = pg_env.cluster("appdb")
    redis_port = free_port()
    redis_pid = _start_redis(live / "redis", redis_port)
    config = base / "safehold.toml"
    every_2s = "*/2 * * * * *"
    config.write_text(
        repository_table(pg_env.repo, pg_env.password_file)
        + "[services.app]\n"
        + postgres_source(  # the daemon takes one base backup at once
            "app", cluster.pgdata, cluster.sockdir, cluster.port,
            schedules='{ full = "0 0 1 1 *", incremental = "off" }',
        )
        + files_source("app", live / "uploads", name="uploads", backup=every_2s)
        + files_source("app", live / "config", name="config", backup=every_2s)
        + sqlite_source("app", live / "meta.db", backup=every_2s)
        + REDIS_SOURCE.format(redis_port=redis_port)
        + daemon_table(
            base / "state", metrics="off", status_interval="1h", concurrency=4, retries=0
        )
        + RECOVERY.format(wrapper=pg_env.wrapper, redis_dir="/var/lib/redis-app")
    )  # fmt: skip
    svc = Service(pg_env, cluster, base, config, redis_pid, redis_port)
    try:
        yield svc
    finally:
        for pgdata, port in svc.recovered:
            PgCluster(pgdata, port, cluster.sockdir).stop("immediate")
        for pid in base.rglob("redis.pid"):
            stop_redis(pid)


def _protect_while_writing(svc: Service) -> None:
    svc.live.sql("CREATE TABLE items (id int PRIMARY KEY, t timestamptz NOT NULL)")
    svc.live.sql("CREATE TABLE accounts (id int PRIMARY KEY, owner text)")
    svc.live.sql("INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 50) g")
    subprocess.run(["redis-cli", "-p", str(svc.redis_port), "SET", "greeting", "hello"], check=True)
    writer = Writer(svc.live, svc.uploads)
    writer.thread.start()
    daemon = DaemonRun(svc.config, svc.base / "state").start()
    try:
        daemon.wait_for("backups of every source and a cut", _protected, timeout=300)
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
        writer.stop.set()
        writer.thread.join()
    assert writer.count > 50
    cuts = json.loads(svc.safehold("--json", "cuts", "-c", str(svc.config), check=True).stdout)
    svc.cut = cuts[-1]
    svc.accounts = svc.live.sql("SELECT * FROM accounts ORDER BY id")
    svc.live.sql("INSERT INTO accounts VALUES (51, 'late but kept')")
    svc.accounts.append((51, "late but kept"))
    time.sleep(0.2)
    svc.before_drop = datetime.now(UTC)
    time.sleep(0.2)
    svc.live.sql("DROP TABLE accounts")
    svc.dropped_at = datetime.now(UTC)
    svc.backup("uploads")  # the newest uploads snapshot comes after the drop
    svc.live.wait_archived()


def _protected(runs: list[JobRun]) -> bool:
    """The daemon took the database's base backup, two backups of every other source,
    and a consistent cut of the service."""
    done = Counter(r.job for r in runs if r.outcome == "success")
    others = ("uploads", "config", "meta", "cache")
    return (
        done["app/db full"] >= 1
        and all(done[f"app/{name} backup"] >= 2 for name in others)
        and done["cut app"] >= 1
    )


def _oracle(svc: Service, root: Path, summary: dict[str, Any], strict_window: float) -> None:
    """Every upload file has its row; every row committed before the uploads' snapshot
    began its walk has its file (but for ``strict_window`` seconds, the writer's gap between
    a commit and its file); nothing is newer than the recovery point.

    The walk's start, not its end (the recovery point): a file written while the walk ran
    may be missed, and on a loaded machine a walk of the uploads takes seconds."""
    by_name = {s["name"]: s for s in summary["sources"]}
    db = by_name["db"]
    cluster = PgCluster(Path(db["target"]), db["port"], svc.live.sockdir)
    rows = dict(cluster.sql("SELECT id, t FROM items"))
    uploads = root / str(svc.uploads).lstrip("/")
    files = {int(p.stem): datetime.fromisoformat(p.read_text()) for p in uploads.glob("*.txt")}
    assert files, "no upload file came back"
    missing_rows = sorted(set(files) - set(rows))
    assert not missing_rows, f"upload files without their rows: {missing_rows[:10]}"
    uploads_id = by_name["uploads"]["snapshot_id"]
    (walk,) = [s["time"] for s in svc.env.json("snapshots") if s["id"] == uploads_id]
    read_from = datetime.fromisoformat(walk) - timedelta(seconds=strict_window)
    missing_files = sorted(i for i, t in rows.items() if t < read_from and i not in files)
    assert not missing_files, f"rows without their upload files: {missing_files[:10]}"
    point = datetime.fromisoformat(summary["point"])
    assert max(rows.values()) <= point
    assert max(files.values()) <= point


def _runs_as_backed_up(svc: Service, db: dict[str, Any], summary: dict[str, Any]) -> None:
    """WAL was replayed with the plan's replay settings (larger buffers than the live
    cluster's 32MB, rare restartpoints), then the server was restarted: it runs with the
    settings it was backed up with, none of them from a command line."""
    start = next(s for s in summary["steps"] if s["step"] == "start" and s["source"] == "db")
    assert "with the replay settings, then restarted with its own settings" in start["detail"]
    assert db["replay_seconds"] > 0 and db["restart_seconds"] > 0
    cluster = PgCluster(Path(db["target"]), db["port"], svc.live.sockdir)
    names = ("shared_buffers", "checkpoint_timeout", "max_wal_size")
    settings = cluster.sql(
        "SELECT name, current_setting(name), source FROM pg_settings"
        " WHERE name = ANY(%s) ORDER BY name",
        list(names),
    )
    assert settings == [
        ("checkpoint_timeout", "5min", "default"),
        ("max_wal_size", "256MB", "configuration file"),
        ("shared_buffers", "32MB", "configuration file"),
    ]
    opts = (Path(db["target"]) / "postmaster.opts").read_text()
    assert "shared_buffers" not in opts, opts
    # every timeline history file PostgreSQL asked for was answered from the WAL spool
    log = (Path(db["target"]) / "safehold-recovery.log").read_text()
    assert "history is not in the repository" not in log, log


def test_recover_a_whole_service(service: Service) -> None:
    svc = service
    _protect_while_writing(svc)
    live_pgdata = sorted(os.listdir(svc.live.pgdata))

    # bad input: one line each, the right exit code, the live service untouched
    proc = svc.safehold("recover", "nosuch", "-c", str(svc.config), "--latest")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "safehold: unknown service 'nosuch' (the policy defines: app)"
    ]
    proc = svc.safehold("recover", "app", "-c", str(svc.config), "--to-time", "2001-01-01T00:00Z")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot reach 2001-01-01" in proc.stderr
    proc = svc.safehold("recover", "app", "-c", str(svc.config), "--latest")  # in place: live
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("safehold: Recovery refused, nothing was written:")
    assert f"target {svc.live.pgdata} of source db is not empty" in last
    assert f"port {svc.live.port} of source db is in use" in last
    assert svc.live.sql("SELECT count(*) FROM items")[0][0] > 0  # still running, untouched
    assert sorted(os.listdir(svc.live.pgdata)) == live_pgdata
    busy = svc.base / "busy"
    (busy / str(svc.uploads).lstrip("/")).mkdir(parents=True)
    (busy / str(svc.uploads).lstrip("/") / "keep.txt").write_text("mine")
    code, summary, err = svc.recover("--latest", "--target-root", str(busy))
    assert code == 1 and summary["outcome"] == "refused", err
    assert "uploads is not empty" in summary["error"]
    assert (busy / str(svc.uploads).lstrip("/") / "keep.txt").read_text() == "mine"
    assert not (busy / str(svc.live.pgdata).lstrip("/")).exists()

    # host lost: everything wiped, then back onto new directories and ports
    svc.live.stop("immediate")
    stop_redis(svc.redis_pid)
    shutil.rmtree(svc.base / "live")
    shutil.rmtree(svc.live.pgdata)
    root = svc.base / "new-host"
    plan = ["recover", "app", "-c", str(svc.config), "--latest", "--target-root", str(root)]
    shown = svc.safehold(*plan, "--dry-run", check=True).stdout
    assert (
        "    replays with shared_buffers=128MB, checkpoint_timeout=1d, max_wal_size=1TB,"
        " then restarts with its own settings\n" in shown
    ), shown
    assert "replays with" not in svc.safehold(*plan, "--dry-run", "--no-tune-replay").stdout
    assert not root.exists()
    code, summary, err = svc.recover("--latest", "--target-root", str(root))
    assert code == 0, (err, summary)
    assert summary["outcome"] == "recovered" and summary["healthy"] is True
    assert summary["rto_seconds"] > 0
    assert summary["data_loss_seconds"] is not None
    assert [s["step"] for s in summary["steps"]][:2] == ["plan", "preflight"]
    assert {s["step"] for s in summary["steps"]} >= {"preflight", "restore", "start", "health"}
    by_name = {s["name"]: s for s in summary["sources"]}
    assert by_name["db"]["port"] != svc.live.port
    assert by_name["cache"]["port"] != svc.redis_port
    _oracle(svc, root, summary, strict_window=1.0)
    _runs_as_backed_up(svc, by_name["db"], summary)
    port = by_name["cache"]["port"]
    got = subprocess.run(["redis-cli", "-p", str(port), "GET", "greeting"], capture_output=True)
    assert got.stdout == b"hello\n"
    meta = root / str(svc.base / "live" / "meta.db").lstrip("/")
    with sqlite3.connect(meta) as db:
        assert db.execute("SELECT v FROM settings").fetchall() == [("gold",)]

    # accidental deletion: just before the DROP, into a sandbox; the table exactly back
    assert svc.before_drop is not None
    sandbox = svc.base / "sandbox-drop"
    code, summary, err = svc.recover(
        "--to-time", svc.before_drop.isoformat(), "--target-root", str(sandbox)
    )
    assert code == 0, (err, summary)
    db = {s["name"]: s for s in summary["sources"]}["db"]
    restored = PgCluster(Path(db["target"]), db["port"], svc.live.sockdir)
    assert restored.sql("SELECT * FROM accounts ORDER BY id") == svc.accounts

    # a consistent cut, recorded by the daemon's cut job: files and rows from one second
    # the 1 s target is measured in bench/ on a quiet machine; here only a sane bound
    assert 0 <= svc.cut["skew_seconds"] < 10, svc.cut
    at_cut = svc.base / "cut"
    code, summary, err = svc.recover("--at-cut", svc.cut["id"], "--target-root", str(at_cut))
    assert code == 0, (err, summary)
    assert summary["skew_seconds"] < 10
    by_name = {s["name"]: s for s in summary["sources"]}
    assert by_name["uploads"]["snapshot_id"] == svc.cut["sources"]["uploads"]["snapshot"]
    _oracle(svc, at_cut, summary, strict_window=1.0)
