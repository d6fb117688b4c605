"""A source whose first backup is under way is pending, not an RPO breach: the daemon
neither alerts nor reports it outside until that run settles (issue 14, item 3)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.policy import daemon_table, repository_table
from tests.service.daemon_helpers import SAFEHOLD, DaemonRun, clean_env, init_repo, write_password
from tests.service.test_alerts import Receiver

pytestmark = pytest.mark.timeout(180)

SOURCE = """
[services.{service}]
objectives.rpo = "1h"
[[services.{service}.sources]]
name = "dump"
kind = "command"
options.command = "sh -c '{script}'"
options.filename = "dump.txt"
schedules.backup = "0 0 1 1 *"
"""


def status(config: Path) -> tuple[int, dict[str, bool | None]]:
    """The exit code of `safehold status`, and each service's source: pending or not."""
    proc = subprocess.run(
        [*SAFEHOLD, "--json", "status", "--config", str(config), "--no-replicas"],
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )
    doc = json.loads(proc.stdout)
    return proc.returncode, {s["name"]: s["sources"][0]["pending"] for s in doc["services"]}


def test_first_backup_under_way_is_pending_then_judged(tmp_path: Path) -> None:
    password = write_password(tmp_path / "password")
    init_repo(str(tmp_path / "repo"), password)
    receiver = Receiver()
    config = tmp_path / "safehold.toml"
    config.write_text(
        repository_table(tmp_path / "repo", password)
        + SOURCE.format(service="slow", script="sleep 14; echo data")
        + SOURCE.format(service="bad", script="sleep 10; exit 7")
        + daemon_table(tmp_path / "state", metrics="off", status_interval="1s", retries=0)
        + f"""[[daemon.alerts.webhooks]]
url = "{receiver.url}"
"""
    )
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        daemon.wait_for("both first backups to start", lambda runs: len(runs) == 2)
        code, pending = status(config)
        assert (code, pending) == (0, {"slow": True, "bad": True}), daemon.text()
        daemon.wait_for(
            "the bad backup to fail", lambda runs: any(r.outcome == "failed" for r in runs)
        )
        receiver.wait_for(2)  # job_failed and rpo_exceeded of "bad"
        daemon.wait_for("the slow backup", lambda runs: any(r.outcome == "success" for r in runs))
        time.sleep(2.5)  # two more status evaluations after it
        code, pending = status(config)
        assert (code, pending) == (5, {"slow": False, "bad": False})
    finally:
        assert daemon.stop() == 0
        receiver.close()
    rpo = [d for d in receiver.documents if d["alert"] == "rpo_exceeded"]
    assert [(d["labels"]["service"], d["status"]) for d in rpo] == [("bad", "firing")], rpo
