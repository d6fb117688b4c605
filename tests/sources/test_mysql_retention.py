"""Which archived binlogs prune deletes: below the oldest kept backup's position only."""

from __future__ import annotations

from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources.mysql.binlog import push_binlog
from safehold.sources.mysql.retention import unneeded_binlogs


def _backup(kind: str, instance: str, first: str) -> Snapshot:
    return Snapshot(
        time="2026-01-01T00:00:00+00:00",
        tree="t",
        paths=["/x"],
        hostname="h",
        source={"kind": kind, "instance": instance, "binlog_file": first},
    )


def test_binlogs_before_the_oldest_kept_backup_go(memory_repo: Repository) -> None:
    for n in range(1, 7):
        push_binlog(memory_repo, "db1", f"mariadb-bin.{n:06}", b"\xfebin" + bytes([n]))
        push_binlog(memory_repo, "db2", f"mariadb-bin.{n:06}", b"\xfebin" + bytes([n]))
    kept = [
        _backup("mysql", "db1", "mariadb-bin.000004"),
        _backup("mysql-dump", "db1", "mariadb-bin.000003"),
        _backup("postgres", "db2", "mariadb-bin.000006"),  # not a MariaDB backup: ignored
    ]
    assert unneeded_binlogs(memory_repo, kept) == [
        "binlog/db1/mariadb-bin.000001",
        "binlog/db1/mariadb-bin.000002",
    ]  # db2 has no kept backup: all its logs stay


def test_nothing_goes_without_kept_backups(memory_repo: Repository) -> None:
    push_binlog(memory_repo, "db1", "mariadb-bin.000001", b"\xfebin")
    assert unneeded_binlogs(memory_repo, []) == []
