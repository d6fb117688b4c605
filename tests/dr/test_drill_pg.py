"""``safehold drill`` of a service with PostgreSQL 15 (WAL archived), files and SQLite,
on real servers: the drill passes with pg_amcheck and row counts, its report times every
step, and the live cluster (its data, its port, its sessions) and the live files are as
they were; then a drill with a 1-second RTO objective restores correctly and exits 8."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.policy import (
    daemon_table,
    files_source,
    postgres_source,
    repository_table,
    run_job,
    sqlite_source,
)
from tests.service.daemon_helpers import SAFEHOLD, DaemonRun, clean_env
from tests.sources.pg_fixtures import PgEnv, pg_env  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(600)

RECOVERY_AND_DRILL = """
[services.app.recovery]
safehold_command = "{wrapper}"
timeout = "5m"

[services.app.drill]
schedule = "off"
[[services.app.drill.checks]]
name = "every order"
sql = "SELECT count(*) FROM orders"
source = "db"
expect = "300"
"""


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _drill(config: Path, sandbox: Path) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [*SAFEHOLD, "--json", "drill", "app", "-c", config, "--sandbox", sandbox],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
    )
    docs = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    return proc.returncode, next(d for d in docs if d.get("message_type") == "drill"), proc.stderr


def _sessions(live: Any) -> list[tuple[Any, ...]]:
    return live.sql(
        "SELECT datname, usename, application_name, backend_type FROM pg_stat_activity"
        " WHERE pid <> pg_backend_pid() ORDER BY 1, 2, 3, 4"
    )


def test_a_drill_of_postgres_files_and_sqlite(pg_env: PgEnv) -> None:  # noqa: F811
    base = pg_env.base / "drilled"
    uploads = base / "uploads"
    uploads.mkdir(parents=True)
    for i in range(30):
        (uploads / f"{i}.bin").write_bytes(bytes([i]) * 5000)
    with sqlite3.connect(base / "meta.db") as db:
        db.execute("CREATE TABLE settings (k, v)")
        db.execute("INSERT INTO settings VALUES ('plan', 'gold')")
    live = pg_env.cluster("drilldb")
    live.sql("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    live.sql("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 200) g")
    config = base / "safehold.toml"
    config.write_text(
        repository_table(pg_env.repo, pg_env.password_file)
        + "[services.app]\n"
        + postgres_source("app", live.pgdata, live.sockdir, live.port)
        + files_source("app", uploads, name="uploads")
        + sqlite_source("app", base / "meta.db")
        + RECOVERY_AND_DRILL.format(wrapper=pg_env.wrapper)
        + daemon_table(base / "state", metrics="off")
    )
    run_job(config, "backup", "app/db", "full")
    live.sql("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(201, 300) g")
    run_job(config, "backup", "app/uploads", "backup")
    run_job(config, "backup", "app/meta", "backup")
    live.sql("CREATE TABLE heartbeat AS SELECT now() AS t")  # the database moves on
    live.sql("SELECT pg_switch_wal()")
    live.wait_archived()

    files_before = _digest(uploads) | {"meta.db": _digest(base)["meta.db"]}
    rows_before = live.sql("SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM orders")
    sessions_before = _sessions(live)
    code, report, err = _drill(config, base / "sandbox")
    assert code == 0, (err, report.get("error"))
    assert report["outcome"] == "passed" and report["rto_met"] and report["rpo_met"]
    checks = {c["name"]: c for c in report["checks"]}
    db = checks["db data"]
    assert db["passed"] and "pg_amcheck clean" in db["detail"], db
    assert db["figures"]["rows"]["postgres"]["public.orders"] == 300
    assert checks["every order"]["passed"]  # the WAL after the base backup was replayed
    assert checks["uploads data"]["figures"]["files"] == 30
    timed = {(s["step"], s["source"]): s["seconds"] for s in report["steps"]}
    for step in (("restore", "db"), ("start", "db"), ("verify", "db"), ("verify", "uploads")):
        assert timed[step] is not None and timed[step] >= 0
    assert report["rpo_sources"]["db"]["basis"].startswith("the live primary's")
    port = next(s["port"] for s in report["sources"] if s["name"] == "db")
    assert port != live.port
    # the live service as it was
    assert live.sql("SHOW port") == [(str(live.port),)]
    assert live.sql("SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM orders") == (
        rows_before
    )
    assert _sessions(live) == sessions_before
    assert _digest(uploads) | {"meta.db": _digest(base)["meta.db"]} == files_before
    assert not any((base / "sandbox").iterdir())  # torn down
    stopped = subprocess.run(["pg_isready", "-h", str(live.sockdir), "-p", str(port)])
    assert stopped.returncode != 0  # the sandbox's server is gone

    # a drill killed with SIGKILL while it keeps its sandbox: the next daemon start stops
    # its server and removes its directory
    root, port = _killed_while_kept(config, base / "sandbox")
    assert _pg_ready(live.sockdir, port), "the killed drill's server should still run"
    quiet = base / "quiet.toml"  # the same state directory, nothing scheduled
    quiet.write_text(
        f'[repositories.main]\nlocation = "{pg_env.repo}"\npassword_file = "{pg_env.password_file}"\n'
        f'[services.other]\n[[services.other.sources]]\nname = "f"\nkind = "files"\n'
        f'options.paths = ["{uploads}"]\nschedules.backup = "off"\n'
        f'[daemon]\nstate_dir = "{base / "state"}"\nmetrics = "off"\nstatus_interval = "1h"\n'
    )
    daemon = DaemonRun(quiet, base / "state").start()
    try:
        deadline = time.monotonic() + 120
        while root.exists() or _pg_ready(live.sockdir, port):
            assert time.monotonic() < deadline, daemon.text()
            time.sleep(0.3)
    finally:
        assert daemon.stop() == 0
    assert not list((base / "state" / "drills" / "running").iterdir())
    assert live.sql("SHOW port") == [(str(live.port),)]

    # the same service with a 1-second RTO objective: the data is right, the objective missed
    # (the drill itself now takes about 1 s here, so a 2-second check makes the miss certain)
    config.write_text(
        config.read_text() + '[services.app.objectives]\nrto = "1s"\n'
        '[[services.app.drill.checks]]\nname = "slow"\ncommand = "sleep 2"\n'
    )
    code, report, err = _drill(config, base / "sandbox")
    assert code == 8, (err, report.get("error"))
    assert report["outcome"] == "objective missed" and report["rto_met"] is False
    assert all(c["passed"] for c in report["checks"])


def _pg_ready(sockdir: Path, port: int) -> bool:
    return subprocess.run(["pg_isready", "-h", str(sockdir), "-p", str(port)]).returncode == 0


def _killed_while_kept(config: Path, sandbox: Path) -> tuple[Path, int]:
    """A drill run with --keep, SIGKILLed once it holds its sandbox: (its root, db port)."""
    proc = subprocess.Popen(
        [*SAFEHOLD, "drill", "app", "-c", config, "--sandbox", sandbox, "--keep", "1h"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("  db (postgres): "):
                break
    finally:
        proc.kill()
        proc.wait(30)
    kept = next(x for x in lines if x.startswith("sandbox kept for "))
    root = Path(kept.split(" at ", 1)[1].split(" (Ctrl-C", 1)[0])
    port = int(lines[-1].split(" port ", 1)[1].split()[0])
    assert root.is_dir(), "".join(lines)
    return root, port
