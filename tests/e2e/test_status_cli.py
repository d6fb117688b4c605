"""``safehold status`` as a user runs it: exit codes 0, 5 and 1, the JSON document, the
text table, ``--no-replicas``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.policy import daemon_table, files_source, repository_table, run_job
from tests.service.daemon_helpers import SAFEHOLD, clean_env, init_repo, write_password


def setup(tmp_path: Path, rpo: str) -> Path:
    password = write_password(tmp_path / "password")
    init_repo(str(tmp_path / "repo"), password)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    config = tmp_path / "safehold.toml"
    config.write_text(
        repository_table(tmp_path / "repo", password, tmp_path / "replica")
        + f'[services.app]\nobjectives.rpo = "{rpo}"\n'
        + files_source("app", data)
        + daemon_table(tmp_path / "state")
    )
    return config


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAFEHOLD, *args], capture_output=True, text=True, env=clean_env(), timeout=120
    )


def backup(config: Path) -> None:
    """The files source's backup, as the daemon runs it."""
    run_job(config, "backup", "app/files", "backup")


def test_never_backed_up_is_outside_then_a_backup_brings_it_within(tmp_path: Path) -> None:
    config = setup(tmp_path, "1h")
    before = run("--json", "status", "--config", str(config))
    assert before.returncode == 5, before.stderr
    doc = json.loads(before.stdout)
    assert doc["message_type"] == "status" and doc["within_objectives"] is False
    (source,) = doc["services"][0]["sources"]
    assert source["recovery_point"] is None and source["within_objective"] is False

    backup(config)
    after = run("--json", "status", "--config", str(config))
    assert after.returncode == 0, after.stderr
    doc = json.loads(after.stdout)
    (source,) = doc["services"][0]["sources"]
    assert source["recovery_point_from"] == "snapshot"
    assert 0 <= source["exposure_seconds"] < 60
    assert doc["replicas"][0]["location"] == str(tmp_path / "replica")

    text = run("status", "--config", str(config))
    assert text.returncode == 0
    assert "service app: within objectives" in text.stdout
    assert "files" in text.stdout and "(snapshot)" in text.stdout

    quiet = json.loads(run("--json", "status", "-c", str(config), "--no-replicas").stdout)
    assert quiet["replicas"] == []


def test_a_replica_missing_a_pack_is_behind_and_says_what_it_lacks(tmp_path: Path) -> None:
    config = setup(tmp_path, "1h")
    backup(config)
    run_job(config, "replicate", "main", str(tmp_path / "replica"))
    synced = json.loads(run("--json", "status", "-c", str(config)).stdout)["replicas"][0]
    assert synced["lag_seconds"] == 0 and synced["missing"] == {} and synced["behind"] is None

    pack = next((tmp_path / "replica" / "data").rglob("*"))
    while pack.is_dir():
        pack = next(pack.iterdir())
    pack.unlink()  # lost on the replica: its snapshot no longer restores there
    replica = json.loads(run("--json", "status", "-c", str(config)).stdout)["replicas"][0]
    assert replica["lag_seconds"] > 0 and replica["missing"] == {"packs": 1}
    assert "missing on the replica: packs" in replica["behind"]["reason"]
    text = run("status", "-c", str(config)).stdout
    assert "packs 1" in text and f"{tmp_path / 'replica'} behind since" in text


def test_a_short_rpo_is_breached_as_time_passes(tmp_path: Path) -> None:
    config = setup(tmp_path, "1s")
    backup(config)
    import time

    time.sleep(1.5)
    proc = run("status", "--config", str(config))
    assert proc.returncode == 5
    assert "OUTSIDE" in proc.stdout


def test_a_policy_error_exits_1_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "safehold.toml"
    config.write_text('[repositories.main]\nlocation = "/x"\n')
    proc = run("status", "--config", str(config))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{config}:")
