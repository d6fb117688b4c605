"""``recover`` without database servers: the recovery table's errors, the plan, the cut job,
and on a service of files and SQLite: a dry run, a failing health check (exit 6), an
interrupted run resumed, another moment refused until --force."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from safehold.dr.jobs import job_commands
from safehold.dr.load import PolicyError, load_policy, parse_policy
from safehold.dr.recovery.replay import replay_settings
from safehold.dr.schedule import JobId, scheduled_jobs
from safehold.sources.postgres.walprefetch import spooled_restore_command
from tests.dr.test_plan_cmd import _parse
from tests.servers import run_seaweedfs
from tests.service.daemon_helpers import (
    SAFEHOLD,
    DaemonRun,
    clean_env,
    init_repo,
    write_password,
)

BASE = """\
[repositories.main]
location = "/srv/repo"
password_file = "/etc/pw"

[services.app]
[[services.app.sources]]
name = "db"
kind = "postgres"
options = { pgdata = "/pg" }
[[services.app.sources]]
name = "files"
kind = "files"
options.paths = ["/srv/files"]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "safehold.toml")
    return [str(p) for p in caught.value.problems]


def test_recovery_table_errors_name_file_line_and_key() -> None:
    text = BASE + textwrap.dedent(
        """\
        [services.app.recovery]
        cuts = "every minute"
        [services.app.recovery.sources.db]
        port = 5433
        path = "/x.db"
        [services.app.recovery.sources.nosuch]
        port = 1
        [[services.app.recovery.checks]]
        sql = "SELECT 1"
        source = "files"
        [[services.app.recovery.checks]]
        tcp = "127.0.0.1:1"
        http = "http://x/"
        """
    )
    assert problems(text) == [
        "safehold.toml:15: services.app.recovery.cuts: a cron expression has 5 fields"
        " (minute hour day month weekday), or 6 with seconds first; 'every minute' has 2",
        "safehold.toml:18: services.app.recovery.sources.db.path: does not apply to a"
        " postgres source (it takes host, pgdata, port)",
        "safehold.toml:19: services.app.recovery.sources.nosuch: unknown source 'nosuch'"
        " (db, files)",
        "safehold.toml:23: services.app.recovery.checks[0].source: an sql check needs a"
        " postgres or mysql source, not files",
        "safehold.toml:24: services.app.recovery.checks[1]: give exactly one of sql, http,"
        " tcp, command (got http and tcp)",
    ]


def test_replay_settings_hold_the_database_within_a_quarter_of_the_memory() -> None:
    gib = 1 << 30
    tuned = replay_settings(2 * gib, 22 * gib)
    assert tuned == {
        "shared_buffers": "2560MB",  # the database and a quarter more
        "checkpoint_timeout": "1d",
        "max_wal_size": "1TB",
    }
    assert replay_settings(100 * gib, 16 * gib)["shared_buffers"] == "4096MB"  # a quarter
    assert replay_settings(1000, 16 * gib)["shared_buffers"] == "128MB"  # never below default
    assert replay_settings(2 * gib, 400 << 20) == {}  # no room: replay as configured


def test_the_spooled_restore_command_serves_the_last_segment_twice(tmp_path: Path) -> None:
    """PostgreSQL asks for the last segment it replayed again when it starts its new
    timeline (after unlinking what it had): the spool keeps it for that, one at a time."""
    spool, pg_wal = tmp_path / "pg data.wal-spool", tmp_path / "pg_wal"
    spool.mkdir()
    pg_wal.mkdir()
    (spool / "SEG1").write_bytes(b"one")
    (spool / "SEG2").write_bytes(b"two")
    (spool / "SEG3.absent").touch()
    command = spooled_restore_command(str(spool), "echo asked the repository for %f; exit 7")

    def ask(name: str) -> tuple[int, bytes | None, str]:
        target = pg_wal / "RECOVERYXLOG"
        target.unlink(missing_ok=True)  # as PostgreSQL does before each restore_command
        argv = ["sh", "-c", command.replace("%f", name).replace("%p", str(target))]
        proc = subprocess.run(argv, capture_output=True, text=True)
        return proc.returncode, target.read_bytes() if target.exists() else None, proc.stdout

    assert ask("SEG1") == (0, b"one", "")
    assert ask("SEG1") == (0, b"one", "")  # again: from the spool, not the repository
    assert ask("SEG2") == (0, b"two", "")
    assert ask("SEG1") == (7, None, "asked the repository for SEG1\n")  # only the last kept
    assert ask("SEG2") == (0, b"two", "")
    assert ask("SEG3")[0] == 1  # not archived, said without asking
    assert sorted(p.name for p in spool.iterdir()) == ["SEG2.kept", "SEG3.absent"]


def test_plan_shows_the_recovery_table_and_the_cut_job_parses(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        BASE
        + '[services.app.recovery]\ncuts = "*/5 * * * *"\nstart = ["systemctl start app"]\n'
        + '[services.app.recovery.sources.db]\npgdata = "/new/pg"\nport = 5499\n'
        + '[[services.app.recovery.checks]]\ntcp = "127.0.0.1:{db.port}"\n'
    )
    proc = subprocess.run(
        [*SAFEHOLD, "plan", "-c", config], capture_output=True, text=True, env=clean_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "  recovery    cuts */5 * * * *, timeout 1h\n" in proc.stdout
    assert "    db -> pgdata /new/pg, port 5499\n" in proc.stdout
    assert "    check tcp check 1: tcp 127.0.0.1:{db.port}, timeout 1m\n" in proc.stdout
    policy = load_policy(config)
    assert (JobId("cut", "app", "cuts"), "*/5 * * * *") in scheduled_jobs(policy)
    (command,) = job_commands(policy, JobId("cut", "app", "cuts"))
    assert command.argv == ["--json", "cut", "app"]
    assert _parse(command.argv[1:]).command.name == "cut"


# -- a service of files and SQLite ------------------------------------------------------


def _service(
    tmp_path: Path, checks: str = "", location: str | None = None, env: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """Live files and a SQLite database, a policy, each source backed up once; the
    repository in ``location`` (default: a directory) reached with ``env``, and with
    a local replica (replicated after the backups)."""
    live = tmp_path / "live"
    (live / "files" / "sub").mkdir(parents=True)
    for i in range(20):
        (live / "files" / "sub" / f"{i}.txt").write_text(f"file {i}\n" * 100)
    with sqlite3.connect(live / "app.db") as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (42)")
    password = write_password(tmp_path / "pw")
    location = location or str(tmp_path / "repo")
    init_repo(location, password, clean_env(**(env or {})))
    config = tmp_path / "safehold.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [repositories.main]
            location = "{location}"
            password_file = "{password}"
            [[repositories.main.replicas]]
            location = "{tmp_path / "replica"}"
            [services.app]
            [[services.app.sources]]
            name = "files"
            kind = "files"
            options.paths = ["{live / "files"}"]
            [[services.app.sources]]
            name = "meta"
            kind = "sqlite"
            options.database = "{live / "app.db"}"
            [services.app.recovery]
            timeout = "1m"
            """
        )
        + checks
    )
    _backup(config, env)
    return config, live


def _backup(config: Path, env: dict[str, str] | None = None) -> None:
    """Each source's backup, then the replication, by the commands the daemon runs."""
    policy = load_policy(config)
    jobs = [JobId("backup", f"app/{source}", "backup") for source in ("files", "meta")]
    jobs.append(JobId("replicate", "main", policy.repositories["main"].replicas[0].location))
    for job in jobs:
        for command in job_commands(policy, job):
            subprocess.run(
                [*SAFEHOLD, *command.argv],
                check=True,
                capture_output=True,
                env=clean_env(**(env or {}), **command.env),
            )


def _recover(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [*SAFEHOLD, "--json", "recover", "app", "-c", config, *args],
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=300,
    )
    return proc.returncode, [json.loads(x) for x in proc.stdout.splitlines()], proc.stderr


def test_dry_run_writes_nothing_and_a_failing_check_exits_6(tmp_path: Path) -> None:
    failing = '[[services.app.recovery.checks]]\nname = "app answers"\ncommand = "false"\ntimeout = "1s"\n'
    passing = '[[services.app.recovery.checks]]\ncommand = "test -s {meta.path}"\n'
    config, live = _service(tmp_path, passing + failing)
    root = tmp_path / "sandbox"
    code, docs, err = _recover(config, "--latest", "--target-root", str(root), "--dry-run")
    assert code == 0, err
    (plan,) = docs
    assert plan["message_type"] == "plan"
    assert [c["spec"] for c in plan["checks"]] == [f"test -s {root}{live}/app.db", "false"]
    assert not root.exists()
    code, docs, err = _recover(config, "--latest", "--target-root", str(root))
    assert code == 6
    assert err.strip().splitlines() == [
        "safehold: The service came back but is not healthy: app answers: 'false' exited 1"
    ]
    summary = docs[-1]
    assert summary["outcome"] == "unhealthy" and summary["rto_seconds"] is None
    health = [s for s in summary["steps"] if s["step"] == "health"]
    assert [(s["source"], s["outcome"]) for s in health] == [
        ("command check 1", "ok"),
        ("app answers", "failed"),
    ]
    assert (
        root / str(live / "files" / "sub" / "7.txt").lstrip("/")
    ).read_text() == "file 7\n" * 100


def test_an_interrupted_recovery_resumes_its_own_plan(tmp_path: Path) -> None:
    config, live = _service(tmp_path)
    root = tmp_path / "sandbox"
    code, docs, err = _recover(config, "--latest", "--target-root", str(root), "--dry-run")
    plan = docs[0]
    files_target = Path(plan["sources"][0]["target"])
    # what a run killed while restoring the files leaves: the state file, half a target
    state = root / ".safehold-recovery.json"
    state.parent.mkdir(parents=True)
    state.write_text(
        json.dumps({"plan": plan, "sources": {"files": "restoring"}, "finished": False})
    )
    (files_target / "sub").mkdir(parents=True)
    (files_target / "sub" / "0.txt").write_text("half")
    (files_target / "stray").write_text("left by the killed run")
    # new data meanwhile: a fresh --latest would pick it, the resume must not
    (live / "files" / "new.txt").write_text("newer")
    _backup(config)
    code, docs, err = _recover(config, "--latest", "--target-root", str(root))
    assert code == 0, err
    summary = docs[-1]
    assert summary["resumed"] is True and summary["point"] == plan["point"]
    assert (files_target / "sub" / "0.txt").read_text() == "file 0\n" * 100
    assert not (files_target / "stray").exists() and not (files_target / "new.txt").exists()
    assert json.loads(state.read_text())["finished"] is True


def test_an_unfinished_recovery_to_another_moment_is_refused_until_force(tmp_path: Path) -> None:
    config, _live = _service(tmp_path)
    root = tmp_path / "sandbox"
    code, docs, err = _recover(config, "--latest", "--target-root", str(root), "--dry-run")
    plan = docs[0]
    state = root / ".safehold-recovery.json"
    state.parent.mkdir(parents=True)
    state.write_text(
        json.dumps({"plan": plan, "sources": {"files": "restored"}, "finished": False})
    )
    target = Path(plan["sources"][0]["target"])
    target.mkdir(parents=True)
    (target / "old.txt").write_text("from the unfinished run")
    later = "2099-01-01T00:00:00Z"
    code, docs, err = _recover(config, "--to-time", later, "--target-root", str(root))
    assert code == 1
    assert err.strip().endswith(
        f"is recorded in {state}: run that command again to resume it, or add --force to discard it"
    )
    assert (target / "old.txt").exists()
    code, docs, err = _recover(config, "--to-time", later, "--target-root", str(root), "--force")
    assert code == 0, err
    assert not (target / "old.txt").exists()
    assert (target / "sub" / "3.txt").exists()


def test_region_loss_recovers_from_the_replica_and_says_so(tmp_path: Path) -> None:
    with run_seaweedfs(tmp_path / "region-1") as s3:
        env = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
        config, live = _service(tmp_path, location=s3.location("primary", "app"), env=env)
    # the primary region's store is gone (stopped); the replica is a disk of this host
    root = tmp_path / "sandbox"
    code, docs, err = _recover(config, "--latest", "--target-root", str(root), env=env)
    assert code == 0, err
    summary = docs[-1]
    assert summary["location"] == str(tmp_path / "replica")
    assert summary["copy_note"].startswith("the repository cannot be read (s3://primary/app")
    assert summary["copy_note"].endswith(f"reading its replica {tmp_path / 'replica'}")
    restored = root / str(live / "files" / "sub" / "19.txt").lstrip("/")
    assert restored.read_text() == "file 19\n" * 100


def test_a_drill_is_the_engine_in_a_sandbox_then_teardown(tmp_path: Path) -> None:
    """What issue 16's drills do with the engine: a sandboxed recovery through the Python
    API, an HTTP check against a server of the test, then teardown."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from safehold.dr.recovery.plan import Moment
    from safehold.dr.recovery.session import RecoveryRequest, prepare
    from safehold.dr.recovery.steps import teardown

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    checks = (
        f'[[services.app.recovery.checks]]\nhttp = "{url}/healthz"\n'
        f'[[services.app.recovery.checks]]\nhttp = "{url}/down"\nstatus = 503\n'
    )
    try:
        config, live = _service(tmp_path, checks)
        seen: list[tuple[str, str | None]] = []
        root = tmp_path / "drill"
        request = RecoveryRequest("app", Moment("latest"), target_root=str(root))
        recovery = prepare(load_policy(config), request, lambda r: seen.append((r.step, r.outcome)))
        report = recovery.run()
    finally:
        server.shutdown()
    assert report.outcome == "recovered", report.error
    assert report.healthy is True and report.rto_seconds() is not None
    assert ("health", "ok") in seen and ("preflight", None) in seen  # begun, then ended
    assert (root / str(live / "app.db").lstrip("/")).exists()
    assert teardown(recovery.plan) == [f"removed {root}"]
    assert not root.exists()


def test_a_full_target_is_refused_then_replaced_with_force(tmp_path: Path) -> None:
    config, live = _service(tmp_path)
    root = tmp_path / "sandbox"
    busy = root / str(live / "app.db").lstrip("/")
    busy.parent.mkdir(parents=True)
    busy.write_text("not a database")
    code, docs, err = _recover(config, "--latest", "--target-root", str(root))
    assert code == 1 and docs[-1]["outcome"] == "refused"
    assert f"target {busy} of source meta is not empty (use --force)" in err
    assert busy.read_text() == "not a database"
    code, docs, err = _recover(config, "--latest", "--target-root", str(root), "--force")
    assert code == 0, err
    with sqlite3.connect(busy) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(42,)]


def test_preflight_refuses_what_the_disk_cannot_hold(tmp_path: Path) -> None:
    from safehold.dr.recovery.plan import Moment, RecoveryPlan, SourcePlan
    from safehold.dr.recovery.sources import estimate_disk

    def plan(size: int) -> RecoveryPlan:
        target = str(tmp_path / "new" / "db.sqlite")
        source = SourcePlan("meta", "sqlite", "id", "t", "t", target, size=size)
        return RecoveryPlan(
            "app", Moment("latest"), "t", "main", "/r", None, [source], [], [], None
        )

    assert estimate_disk(plan(1 << 20)) == []
    (problem,) = estimate_disk(plan(1 << 60))
    assert problem.startswith(f"{tmp_path}: about 1268213655.07 GB needed, ")
    assert problem.endswith(" GB free")


def test_the_daemon_records_cuts_and_recover_brings_one_back(tmp_path: Path) -> None:
    daemon_settings = (
        'cuts = "*/2 * * * * *"\n'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nmetrics = "off"\nstatus_interval = "1h"\n'
    )
    config, _live = _service(tmp_path, daemon_settings)
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        daemon.wait_for(
            "a cut", lambda runs: any(r.job == "cut app" and r.outcome == "success" for r in runs)
        )
    finally:
        assert daemon.stop() == 0
    proc = subprocess.run(
        [*SAFEHOLD, "--json", "cuts", "app", "-c", config],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    cut = json.loads(proc.stdout)[-1]
    assert set(cut["sources"]) == {"files", "meta"}
    code, docs, err = _recover(config, "--at-cut", cut["id"], "--target-root", str(tmp_path / "r"))
    assert code == 0, err
    summary = docs[-1]
    assert summary["point"] == datetime.fromisoformat(cut["time"]).isoformat(
        timespec="microseconds"
    )
    assert {s["name"]: s["snapshot_id"] for s in summary["sources"]} == {
        name: recorded["snapshot"] for name, recorded in cut["sources"].items()
    }


def test_ctrl_c_mid_restore_leaves_a_state_that_the_same_command_resumes(tmp_path: Path) -> None:
    import os
    import signal
    import time

    config, live = _service(tmp_path)
    big = live / "files" / "big.bin"
    with open(big, "wb") as f:
        for _ in range(160):
            f.write(os.urandom(1 << 20))
    _backup(config)
    root = tmp_path / "sandbox"
    state = root / ".safehold-recovery.json"
    argv = [*SAFEHOLD, "recover", "app", "-c", str(config), "--latest", "--target-root", str(root)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            progress = json.loads(state.read_text())["sources"]
        except (OSError, ValueError, KeyError):
            progress = {}
        if "files" in progress:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert json.loads(state.read_text())["finished"] is False
    code, docs, err2 = _recover(config, "--latest", "--target-root", str(root))
    assert code == 0, err2
    assert docs[-1]["resumed"] is True
    restored = root / str(big).lstrip("/")
    assert restored.stat().st_size == 160 << 20
    assert restored.read_bytes() == big.read_bytes()
