"""MariaDB with a real server: dump round trip, full + incrementals, binlog PITR, status."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safehold.repo.repository import Repository
from safehold.sources.command import StreamSpec
from safehold.sources.mysql.binlog import archive_binlogs, list_binlogs
from safehold.sources.mysql.client import MysqlConn
from safehold.sources.mysql.logical import restore_dump, run_dump
from safehold.sources.mysql.physical import (
    choose_chain,
    physical_backups,
    restore_chain,
    run_physical_backup,
)
from safehold.sources.mysql.pitr import replay_to
from safehold.sources.mysql.status import all_statuses
from tests.conftest import CLI
from tests.sources.mysql_server import MariaServer

SCHEMA = """
CREATE DATABASE {db};
USE {db};
CREATE TABLE {db}.orders(id INT PRIMARY KEY AUTO_INCREMENT, who VARCHAR(40), total DECIMAL(10,2),
  note TEXT, at DATETIME(6), raw BLOB) ENGINE=InnoDB;
CREATE TABLE {db}.audit(id BIGINT PRIMARY KEY, what VARCHAR(200)) ENGINE=InnoDB;
CREATE TABLE {db}.plain(k INT, v VARCHAR(10)) ENGINE=MyISAM;
INSERT INTO {db}.orders(who, total, note, at, raw)
  SELECT concat('cust', seq), seq * 1.25, repeat('ünïcødé ', seq % 7), now(6), unhex(md5(seq))
  FROM seq_1_to_2000;
INSERT INTO {db}.audit SELECT seq, concat('event ', seq) FROM seq_1_to_500;
INSERT INTO {db}.plain SELECT seq, 'x' FROM seq_1_to_50;
"""


def _conn(server: MariaServer) -> MysqlConn:
    return MysqlConn(socket=str(server.socket), user="root")


def _of(checksums: dict[str, str], db: str) -> dict[str, str]:
    return {k: v for k, v in checksums.items() if k.startswith(db + ".")}


def _restored_server(maria: MariaServer, name: str) -> MariaServer:
    return MariaServer(maria.base, name, binlog=False)


def test_dump_round_trip_with_checksums(maria: MariaServer, local_repo: Repository) -> None:
    maria.sql(SCHEMA.format(db="shop") + SCHEMA.format(db="crm"))
    maria.sql(
        "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON shop.* TO 'app'@'127.0.0.1'"
    )
    before = maria.checksums()
    result = run_dump(local_repo, _conn(maria), StreamSpec("mysql/all.sql"))
    src = result.snapshot.source
    assert src["kind"] == "mysql-dump" and src["binlog_file"].startswith("mysql-bin.")
    assert src["binlog_pos"] > 0 and src["gtid"]
    maria.sql("DROP DATABASE shop; DROP DATABASE crm; DROP USER 'app'@'127.0.0.1'")
    restore_dump(local_repo, _conn(maria), "latest", output=io.BytesIO())
    assert _of(maria.checksums(), "shop") == _of(before, "shop") != {}
    assert _of(maria.checksums(), "crm") == _of(before, "crm") != {}
    grants = maria.sql("SHOW GRANTS FOR 'app'@'127.0.0.1'")
    assert any("GRANT SELECT ON `shop`.*" in g[0] for g in grants)
    # one database only: crm is left alone
    maria.sql("DROP DATABASE shop; DELETE FROM crm.audit WHERE id > 10")
    restore_dump(local_repo, _conn(maria), "latest", database="shop", output=io.BytesIO())
    assert _of(maria.checksums(), "shop") == _of(before, "shop")
    assert maria.sql("SELECT count(*) FROM crm.audit") == [["10"]]
    maria.sql("DROP DATABASE shop; DROP DATABASE crm; DROP USER 'app'@'127.0.0.1'")


def test_full_and_two_incrementals_restore_equal(
    maria: MariaServer, local_repo: Repository, tmp_path: Path
) -> None:
    conn = _conn(maria)
    maria.sql(SCHEMA.format(db="phys"))
    full = run_physical_backup(local_repo, conn, "full", StreamSpec(""))
    maria.sql(
        "UPDATE phys.orders SET total = total + 1 WHERE id % 3 = 0; INSERT INTO phys.audit SELECT seq, 'incr1' FROM seq_1000_to_1999",
        "phys",
    )
    incr1 = run_physical_backup(local_repo, conn, "incr", StreamSpec(""))
    maria.sql(
        "DELETE FROM phys.orders WHERE id > 1500; CREATE TABLE phys.late(x INT) ENGINE=InnoDB; INSERT INTO phys.late VALUES (1), (2)"
    )
    incr2 = run_physical_backup(local_repo, conn, "incr", StreamSpec(""))
    expected = _of(maria.checksums(), "phys")
    assert incr1.snapshot.source["base"] == full.snapshot.id
    assert incr2.snapshot.source["base"] == incr1.snapshot.id
    assert incr2.snapshot.source["from_lsn"] == incr1.snapshot.source["to_lsn"]
    # an incremental stores far less than the full backup
    assert incr2.data_added < full.data_added / 2
    chain = choose_chain(physical_backups(local_repo))
    assert [s.id for s in chain] == [full.snapshot.id, incr1.snapshot.id, incr2.snapshot.id]
    restored = _restored_server(maria, "phys-restored")
    restore_chain(local_repo, chain, str(restored.datadir), owner="mysql")
    try:
        restored.start()
        assert _of(restored.checksums(), "phys") == expected
        assert set(expected) == {"phys.orders", "phys.audit", "phys.plain", "phys.late"}
    finally:
        restored.stop()
    maria.sql("DROP DATABASE phys")


def _wait_for_next_second() -> datetime:
    """Sleep into the next whole second and return it (binlog times have whole seconds)."""
    now = time.time()
    target = int(now) + 1
    time.sleep(target - now + 0.05)
    return datetime.fromtimestamp(target, UTC)


def test_pitr_between_two_writes(maria: MariaServer, local_repo: Repository) -> None:
    conn = _conn(maria)
    maria.sql(
        "CREATE DATABASE pitr; CREATE TABLE pitr.t(id INT PRIMARY KEY, what VARCHAR(20)) ENGINE=InnoDB"
    )
    maria.sql("INSERT INTO pitr.t SELECT seq, 'base' FROM seq_1_to_100", "pitr")
    backup = run_physical_backup(local_repo, conn, "full", StreamSpec(""))
    time.sleep(1.05)  # writes after the backup's end, in a later second
    maria.sql("INSERT INTO pitr.t SELECT seq, 'first' FROM seq_101_to_150", "pitr")
    maria.sql("UPDATE pitr.t SET what = 'first-upd' WHERE id <= 10")
    target = _wait_for_next_second()
    maria.sql("INSERT INTO pitr.t SELECT seq, 'second' FROM seq_151_to_300", "pitr")
    maria.sql("DELETE FROM pitr.t WHERE id <= 50")
    run = archive_binlogs(local_repo, conn, flush=True)
    assert run.stored and not run.missing
    assert list_binlogs(local_repo.store, backup.snapshot.source["instance"]) == sorted(
        run.stored + run.already
    )
    chain = choose_chain(physical_backups(local_repo), to_time=target)
    assert [s.id for s in chain] == [backup.snapshot.id]
    restored = _restored_server(maria, "pitr-restored")
    restore_chain(local_repo, chain, str(restored.datadir), owner="mysql")
    reached = replay_to(local_repo, chain[-1], str(restored.datadir), target, "mysql")
    assert reached["complete"] is True
    assert reached["reached_time"] is not None
    assert datetime.fromisoformat(reached["reached_time"]) < target
    try:
        restored.start()
        rows = restored.sql("SELECT what, count(*) FROM pitr.t GROUP BY what ORDER BY what")
        assert rows == [["base", "90"], ["first", "50"], ["first-upd", "10"]]
    finally:
        restored.stop()
    statuses = {s.instance: s for s in all_statuses(local_repo)}
    st = statuses[backup.snapshot.source["instance"]]
    assert st.gaps == [] and len(st.windows) == 1
    window = st.windows[0]
    assert datetime.fromisoformat(window["from"]) <= target <= datetime.fromisoformat(window["to"])
    assert st.rpo_exposure_seconds is not None and st.rpo_exposure_seconds < 60
    maria.sql("DROP DATABASE pitr")


def test_cli_backup_archive_restore_status(maria: MariaServer, cli: CLI) -> None:
    """The commands as an operator runs them: dump, full, binlog-archive, restore --to-time."""
    cli.init()
    server = ["--socket", str(maria.socket), "--user", "root", "--instance", "cli-test"]
    maria.sql("CREATE DATABASE clidb; CREATE TABLE clidb.t(id INT PRIMARY KEY) ENGINE=InnoDB")
    cli.run("mysql", "dump", *server)
    doc = json.loads(cli.run("--json", "mysql", "backup", "--type", "full", *server).stdout)
    assert doc["source"]["type"] == "full" and doc["source"]["instance"] == "cli-test"
    time.sleep(1.05)
    maria.sql("INSERT INTO clidb.t SELECT seq FROM seq_1_to_7", "clidb")
    target = _wait_for_next_second()
    maria.sql("INSERT INTO clidb.t SELECT seq FROM seq_8_to_20", "clidb")
    archived = json.loads(cli.run("--json", "mysql", "binlog-archive", "--flush", *server).stdout)
    assert archived["stored"]
    (status,) = json.loads(cli.run("--json", "mysql", "status").stdout)
    assert status["instance"] == "cli-test" and len(status["dumps"]) == 1
    assert len(status["backups"]) == 1 and status["gaps"] == []
    restored = _restored_server(maria, "cli-restored")
    doc = json.loads(
        cli.run(
            "--json",
            "mysql",
            "restore",
            "--to-dir",
            restored.datadir,
            "--to-time",
            target.isoformat(),
            "--instance",
            "cli-test",
        ).stdout
    )
    assert doc["replay"]["complete"] is True
    try:
        restored.start()
        assert restored.sql("SELECT count(*) FROM clidb.t") == [["7"]]
    finally:
        restored.stop()
    proc = cli.run("mysql", "restore", "--to-dir", restored.datadir, check=False)
    assert proc.returncode == 1 and b"is not empty" in proc.stderr
    cli.run("check")  # binlog objects and source snapshots are a valid repository
    maria.sql("DROP DATABASE clidb")


def test_failing_dump_records_no_snapshot(
    maria: MariaServer, local_repo: Repository, tmp_path: Path
) -> None:
    """A user who may read one database but not the user accounts: the dump writes that
    database, then fails on the users part; no snapshot may look like a good dump."""
    from safehold.sources.external import ExternalCommandFailed

    maria.sql(
        "CREATE DATABASE weakdb; CREATE TABLE weakdb.t(x INT); INSERT INTO weakdb.t VALUES (1);"
        "CREATE USER 'weak'@'127.0.0.1' IDENTIFIED BY 's3cret';"
        "GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON weakdb.* TO 'weak'@'127.0.0.1'"
    )
    defaults = tmp_path / "weak.cnf"
    defaults.write_text("[client]\nuser=weak\npassword=s3cret\nhost=127.0.0.1\n")
    defaults.chmod(0o600)
    conn = MysqlConn(port=maria.port, defaults_file=str(defaults))
    assert conn.query("SELECT current_user()") == [["weak@127.0.0.1"]]
    try:
        with pytest.raises(ExternalCommandFailed) as err:
            run_dump(local_repo, conn, StreamSpec("mysql/all.sql"))
        assert str(err.value).startswith("mariadb-dump exited with code 2: ")
        assert "SELECT command denied" in str(err.value)
        assert "s3cret" not in str(err.value)
        assert local_repo.list_snapshots() == []
    finally:
        maria.sql("DROP USER 'weak'@'127.0.0.1'; DROP DATABASE weakdb")
