"""The scheduled base backup of a service with a hot standby asks Patroni which node is
primary (`pg backup --standby SERVICE`) instead of backing up the node the policy's
pgdata names. Patroni's REST API is played by tests/standby/patroni_stub.py here; the
real failover is tests/standby/test_failover.py::test_the_scheduled_backup_follows_the_primary.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.schedule import JobId
from safehold.dr.standby.processes import is_this_host
from tests.service.daemon_helpers import SAFEHOLD, clean_env
from tests.standby.patroni_stub import PatroniStub, patroni_stub, primary_doc, replica_doc
from tests.standby.test_standby_watch import write_config


@pytest.fixture
def stub() -> Iterator[PatroniStub]:
    with patroni_stub(["pg1", "pg2"]) as running:  # after a failover: pg2 is primary
        running.docs["pg1"] = replica_doc("db", "pg1")
        running.docs["pg2"] = primary_doc("db", "pg2", ["pg1"])
        yield running


def test_the_daemons_backups_of_the_standby_source_follow_the_primary(
    tmp_path: Path, stub: PatroniStub
) -> None:
    policy = load_policy(str(write_config(tmp_path, stub)))
    for schedule in ("full", "incremental"):
        [command] = job_commands(policy, JobId("backup", "db/pg", schedule))
        assert command.argv[-2:] == ["--standby", "db"], command.argv


def backup(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAFEHOLD, "pg", "backup", "--pgdata", "/srv/pg1", "--standby", "db", "-c", config],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


def test_backup_asks_patroni_for_the_primary(tmp_path: Path, stub: PatroniStub) -> None:
    config = write_config(tmp_path, stub)
    proc = backup(config)  # pg2 is primary; its /srv/pg2 is not on this host
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [
        "safehold: the primary pg2 (127.0.0.1, /srv/pg2) is not on this host: back up from"
        " that host, or use method 'basebackup'"
    ]
    stub.docs["pg2"] = replica_doc("db", "pg2")  # nobody is primary (mid-failover)
    proc = backup(config)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [
        "safehold: the hot standby of db has no primary to back up now: no primary: writes"
        " through HAProxy fail"
    ]


def test_a_node_on_another_host_is_not_this_host() -> None:
    """Nodes often share a data directory path and a port: only the address tells a
    node of this host from one of another (a lowlevel backup there would read the local
    replica's files while the remote primary ran pg_backup_start)."""
    assert is_this_host("127.0.0.1") and is_this_host("localhost")
    assert not is_this_host("192.0.2.1")  # TEST-NET-1: never an address of this machine
    assert not is_this_host("node.invalid")
