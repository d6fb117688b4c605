"""``safehold daemon`` as a real process on a policy whose schedules fire every few
seconds: jobs, replication after backup, the rotating check, retention, a graceful stop,
a second daemon refused, and kill -9 in the middle of a job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from safehold.service.history import JobRun
from tests.policy import daemon_table, repository_table
from tests.service.daemon_helpers import (
    SAFEHOLD,
    DaemonRun,
    clean_env,
    init_repo,
    safehold_json,
    write_password,
)

pytestmark = pytest.mark.timeout(240)


def write_policy(tmp_path: Path, source: str, daemon: str = "") -> Path:
    password = write_password(tmp_path / "password")
    init_repo(str(tmp_path / "repo"), password)
    config = tmp_path / "safehold.toml"
    config.write_text(
        repository_table(tmp_path / "repo", password, tmp_path / "replica")
        + f'[services.app]\nobjectives.rpo = "1h"\n{source}\n'
        + daemon_table(tmp_path / "state", metrics="off", status_interval="1h", retries=0)
        + daemon
    )
    return config


FILES = """
[[services.app.sources]]
name = "files"
kind = "files"
options.paths = ["{data}"]
schedules.backup = "*/3 * * * * *"
"""

SLOW = """
[[services.app.sources]]
name = "slow"
kind = "command"
options.command = "sh -c 'sleep {seconds}; echo slow data'"
options.filename = "slow.txt"
schedules.backup = "{cron}"
"""


def ok(runs: list[JobRun], job: str) -> list[JobRun]:
    return [r for r in runs if r.job == job and r.outcome == "success"]


def snapshots(tmp_path: Path, where: str = "repo") -> list[dict[str, object]]:
    found: list[dict[str, object]] = safehold_json(
        str(tmp_path / where), tmp_path / "password", "snapshots"
    )
    return found


def test_daemon_backs_up_replicates_checks_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("first")
    config = write_policy(
        tmp_path,
        FILES.format(data=data),
        '[daemon.check]\nschedule = "*/4 * * * * *"\nread_data_subset = "1/2"\n'
        '[daemon.retention]\nschedule = "*/5 * * * * *"\n',
    )
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        runs = daemon.wait_for(
            "two backups, a replication, two checks and a retention run",
            lambda runs: (
                len(ok(runs, "app/files backup")) >= 2
                and ok(runs, f"replicate main to {tmp_path / 'replica'}")
                and len(ok(runs, "check main")) >= 2
                and ok(runs, "retention main")
            ),
        )
        (data / "b.txt").write_text("second")
        daemon.wait_for(
            "a backup after the change",
            lambda later: len(ok(later, "app/files backup")) > len(ok(runs, "app/files backup")),
        )
    finally:
        assert daemon.stop() == 0, daemon.text()
    assert "daemon stopped" in daemon.text()

    runs = daemon.runs()
    backups = ok(runs, "app/files backup")
    assert all(r.snapshot for r in backups)
    assert all(r.outcome in ("success", "cancelled") for r in runs), daemon.text()
    snaps = snapshots(tmp_path)
    # every successful run made one snapshot, none more (retention keeps 30 days)
    assert {s["id"] for s in snaps} == {r.snapshot for r in backups}
    for snap in snaps:
        assert {"service=app", "source=app/files"} <= set(snap["tags"])  # type: ignore[arg-type]
    # the replica holds what the primary held at its last replication
    replicated = {s["id"] for s in snapshots(tmp_path, "replica")}
    assert replicated and replicated <= {s["id"] for s in snaps}

    listing = subprocess.run(
        [*SAFEHOLD, "--json", "jobs", "--config", str(config), "--job", "app/files backup"],
        capture_output=True,
        env=clean_env(),
        check=True,
    )
    doc = json.loads(listing.stdout)
    assert doc["runs"] and all(r["job"] == "app/files backup" for r in doc["runs"])
    text = subprocess.run(
        [*SAFEHOLD, "jobs", "--config", str(config)], capture_output=True, env=clean_env()
    ).stdout.decode()
    assert "app/files backup" in text and "success" in text


def test_check_rotates_through_the_parts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    config = write_policy(
        tmp_path,
        FILES.format(data=data).replace("*/3 * * * * *", "*/2 * * * * *"),
        '[daemon.check]\nschedule = "*/2 * * * * *"\nread_data_subset = "2/3"\n',
    )
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        daemon.wait_for("four checks", lambda runs: len(ok(runs, "check main")) >= 4)
    finally:
        daemon.stop()
    h = daemon.history()
    try:
        part = h.get_state("check_part:main")
    finally:
        h.close()
    checks = len(ok(daemon.runs(), "check main"))
    # starts at part 2 of 3, then 3, 1, 2, ...: after n checks the next part is (2 + n - 1) % 3 + 1
    assert part == (2 + checks - 1) % 3 + 1


def test_a_second_daemon_on_the_same_policy_refuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_policy(tmp_path, FILES.format(data=data).replace("*/3", "*/30"))
    first = DaemonRun(config, tmp_path / "state").start()
    try:
        first.wait_started()  # it holds the lock (a loaded machine may take seconds)
        second = subprocess.run(
            [*SAFEHOLD, "daemon", "--config", str(config)],
            capture_output=True,
            env=clean_env(),
            timeout=60,
        )
    finally:
        first.stop()
    assert second.returncode == 11
    line = second.stderr.decode().strip()
    assert "another safehold daemon already runs this policy" in line
    assert f"pid {first.process.pid}" in line  # type: ignore[union-attr]
    assert len(line.splitlines()) == 1


def test_sigterm_cuts_a_running_backup_cleanly(tmp_path: Path) -> None:
    """A job still running when the grace period ends is interrupted as by Ctrl-C: it is
    recorded as cancelled and leaves no snapshot; the repository checks clean."""
    config = write_policy(
        tmp_path,
        SLOW.format(seconds=30, cron="*/2 * * * * *"),
        'stop_grace = "1s"\n',
    )
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        daemon.wait_for("the slow backup to start", lambda runs: bool(runs))
        time.sleep(1.5)  # the command runs, its child sleeps
    finally:
        started = time.monotonic()
        assert daemon.stop() == 0
    assert time.monotonic() - started < 20
    (run,) = daemon.runs()
    assert run.outcome == "cancelled", daemon.text()
    assert snapshots(tmp_path) == []
    check = safehold_json(str(tmp_path / "repo"), tmp_path / "password", "check")
    assert check["errors"] == []


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline and b"safehold" in cmdline and b"backup" in cmdline:
            found.append(int(pid))
    return found


def test_kill_9_mid_job_then_restart_catches_up_once(tmp_path: Path) -> None:
    """kill -9 of the daemon while a backup runs: the backup dies with it (no orphan
    finishes it), the run is recorded as interrupted, and the restarted daemon runs the
    missed slot once — even though several slots passed while it was down. Every
    successful run has exactly one snapshot and there is no other."""
    config = write_policy(tmp_path, SLOW.format(seconds=3, cron="*/10 * * * * *"))
    first = DaemonRun(config, tmp_path / "state").start()
    try:
        first.wait_for(
            "a scheduled backup to be running",
            lambda runs: any(r.outcome == "running" and r.scheduled_for for r in runs),
        )
        time.sleep(1)
        assert _processes_with("slow.txt"), "the backup child should be running"
    finally:
        first.kill()
    time.sleep(1)
    assert _processes_with("slow.txt") == [], "the job must die with the daemon"
    killed = next(  # the backup's run (a replication after an earlier one may be open too)
        r
        for r in first.runs()
        if r.job == "app/slow backup" and r.outcome in ("interrupted", "running")
    )
    time.sleep(22)  # two or three slots pass while the daemon is down

    second = DaemonRun(config, tmp_path / "state").start()
    try:
        second.wait_for(
            "the caught-up run",
            lambda runs: any(
                r.outcome == "success" and r.id > killed.id and r.job == "app/slow backup"
                for r in runs
            ),
            timeout=60,
        )
    finally:
        assert second.stop() == 0
    runs = sorted(second.runs(), key=lambda r: r.id)
    assert [r.outcome for r in runs if r.id == killed.id] == ["interrupted"], (
        [(r.id, r.job, r.outcome, r.scheduled_for) for r in runs],
        second.text(),
    )
    assert "catching up app/slow backup" in second.text()
    assert second.text().count("catching up") == 1
    caught = next(r for r in runs if r.id > killed.id and r.job == "app/slow backup")
    assert caught.outcome in ("success", "cancelled")
    assert caught.scheduled_for is not None and killed.scheduled_for is not None
    assert caught.scheduled_for > killed.scheduled_for  # the newest missed slot, once
    backups = [r for r in runs if r.job == "app/slow backup" and r.outcome == "success"]
    slots = [r.scheduled_for for r in backups]
    assert len(slots) == len(set(slots))
    successes = {r.snapshot for r in backups}
    assert {s["id"] for s in snapshots(tmp_path)} == successes
    check = safehold_json(str(tmp_path / "repo"), tmp_path / "password", "check")
    assert check["errors"] == []


def test_daemon_refuses_an_invalid_policy(tmp_path: Path) -> None:
    config = tmp_path / "safehold.toml"
    config.write_text('[repositories.main]\nlocation = "/x"\n')
    proc = subprocess.run(
        [*SAFEHOLD, "daemon", "--config", str(config)], capture_output=True, env=clean_env()
    )
    assert proc.returncode == 1
    assert f"{config}:" in proc.stderr.decode()


def test_sigint_stops_like_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_policy(tmp_path, FILES.format(data=data))
    daemon = DaemonRun(config, tmp_path / "state").start()
    daemon.wait_for("a backup", lambda runs: bool(ok(runs, "app/files backup")))
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(30) == 0


def test_a_job_past_its_time_limit_is_cut_without_a_snapshot(tmp_path: Path) -> None:
    config = write_policy(
        tmp_path,
        SLOW.format(seconds=60, cron="0 0 1 1 *"),  # the first backup starts at once
        'job_timeout = "2s"\n',
    )
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        runs = daemon.wait_for(
            "the first backup to be cut",
            lambda runs: any(r.outcome == "failed" for r in runs),
            timeout=60,
        )
    finally:
        daemon.stop()
    (run,) = runs
    assert run.error == "cut after the job's time limit (2s)"
    assert run.duration is not None and run.duration < 30
    assert snapshots(tmp_path) == []
