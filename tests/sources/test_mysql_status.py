"""``safehold status`` on a MariaDB source with continuous binlog archiving: the recovery
point is the newest archived binlog event, later than the base backup."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId
from safehold.dr.status import evaluate
from tests.conftest import CLI, PASSWORD
from tests.sources.mysql_server import MariaServer


def mysql_policy(
    maria: MariaServer, cli: CLI, tmp_path: Path, instance: str, replica: Path | None = None
) -> Policy:
    """A new repository and a policy backing up the session's MariaDB into it."""
    cli.init()
    password = tmp_path / "password"
    password.write_bytes(PASSWORD)
    replicas = f'[[repositories.main.replicas]]\nlocation = "{replica}"' if replica else ""
    config = tmp_path / "safehold.toml"
    config.write_text(
        f"""
[repositories.main]
location = "{cli.repo}"
password_file = "{password}"
{replicas}

[services.shop]
[[services.shop.sources]]
name = "db"
kind = "mysql"
options.socket = "{maria.socket}"
options.user = "root"
options.instance = "{instance}"
"""
    )
    return load_policy(config)


def test_recovery_point_is_the_newest_archived_binlog_event(
    maria: MariaServer, cli: CLI, tmp_path: Path
) -> None:
    policy = mysql_policy(maria, cli, tmp_path, "status-test")
    (full,) = job_commands(policy, JobId("backup", "shop/db", "full"))
    cli.run(*full.argv)
    maria.sql("CREATE DATABASE statusdb; CREATE TABLE statusdb.t(id INT) ENGINE=InnoDB")
    time.sleep(1.1)
    maria.sql("INSERT INTO statusdb.t VALUES (1)", "statusdb")
    (logs,) = job_commands(policy, JobId("backup", "shop/db", "logs"))
    argv = [a for a in logs.argv if a not in ("--interval", "60")]
    cli.run(*argv, "--flush")

    status = evaluate(policy, datetime.now(UTC))
    (source,) = status.services[0].sources
    assert source.recovery_point_from == "archived binlog", source
    assert source.last_backup is not None and source.recovery_point is not None
    assert source.recovery_point > source.last_backup
    assert source.within_objective
    maria.sql("DROP DATABASE statusdb")


def test_a_replica_missing_a_binlog_lags_by_the_age_of_its_newest_restorable_event(
    maria: MariaServer, cli: CLI, tmp_path: Path
) -> None:
    """Binlogs archived after a backup, one of them lost on the replica: the replica
    restores up to the event before the gap, and its lag is that event's age."""
    replica = tmp_path / "replica"
    policy = mysql_policy(maria, cli, tmp_path, "lag-test", replica)
    (full,) = job_commands(policy, JobId("backup", "shop/db", "full"))
    cli.run(*full.argv)
    (logs,) = job_commands(policy, JobId("backup", "shop/db", "logs"))
    archive = [a for a in logs.argv if a not in ("--interval", "60")]
    maria.sql("CREATE DATABASE lagdb; CREATE TABLE lagdb.t(id INT) ENGINE=InnoDB")
    maria.sql("INSERT INTO lagdb.t VALUES (1)", "lagdb")
    restorable = datetime.now(UTC)
    cli.run(*archive, "--flush")
    before = {p.name for p in (cli.repo / "binlog" / "lag-test").iterdir()}
    time.sleep(4)  # later events are seconds newer: a lag counted from them would show
    maria.sql("INSERT INTO lagdb.t VALUES (2)", "lagdb")
    cli.run(*archive, "--flush")
    (lost,) = {p.name for p in (cli.repo / "binlog" / "lag-test").iterdir()} - before
    maria.sql("INSERT INTO lagdb.t VALUES (3)", "lagdb")
    cli.run(*archive, "--flush")
    (replicate,) = job_commands(policy, JobId("replicate", "main", str(replica)))
    cli.run(*replicate.argv)
    (replica / "binlog" / "lag-test" / lost).unlink()

    now = datetime.now(UTC)
    (status,) = evaluate(policy, now).replicas
    assert status.lag is not None and status.missing == {"binlogs": 1}
    assert abs(status.lag - (now - restorable)) < timedelta(seconds=2), status
    assert (
        status.behind is not None
        and "binlogs of MariaDB instance lag-test" in status.behind["reason"]
    )
    maria.sql("DROP DATABASE lagdb")
