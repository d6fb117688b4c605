"""SQLite under concurrent writers: the backup is one moment in time, and restores checked."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.sources.sqlite import SqliteError, backup_sqlite, restore_sqlite
from tests.conftest import CLI

# Each transaction adds one row to `a` and one to `b` and bumps the writer's counter, so
# any moment between transactions has count(a) == count(b) == counter, per writer.
WRITER = """
import sqlite3, sys, time, os
db, writer, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
deadline = time.monotonic() + 60
n = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    n += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO a(w, n, pad) VALUES (?, ?, randomblob(2000))", (writer, n))
    conn.execute("INSERT INTO b(w, n) VALUES (?, ?)", (writer, n))
    conn.execute("UPDATE counter SET v = v + 1 WHERE w = ?", (writer,))
    conn.execute("COMMIT")
    time.sleep(0.002)  # an application's pace; flat out, rollback-mode readers starve
print(n)
"""
WRITERS = 2


def _make_db(path: Path, journal: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.executescript(
        "CREATE TABLE a(w INT, n INT, pad BLOB);"
        "CREATE TABLE b(w INT, n INT);"
        "CREATE TABLE counter(w INT PRIMARY KEY, v INT);"
        # 20 MB to start with, so the copy takes a while and writers run during it
        "CREATE TABLE filler(x BLOB);"
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 5000)"
        " INSERT INTO filler SELECT randomblob(4000) FROM r;"
    )
    conn.executemany("INSERT INTO counter VALUES (?, 0)", [(w,) for w in range(WRITERS)])
    conn.close()


def _state(path: Path) -> dict[int, tuple[int, int, int]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("BEGIN")
        return {
            w: (
                conn.execute("SELECT count(*) FROM a WHERE w = ?", (w,)).fetchone()[0],
                conn.execute("SELECT count(*) FROM b WHERE w = ?", (w,)).fetchone()[0],
                conn.execute("SELECT v FROM counter WHERE w = ?", (w,)).fetchone()[0],
            )
            for w in range(WRITERS)
        }
    finally:
        conn.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_backup_under_concurrent_writers_is_one_moment(
    memory_repo: Repository, tmp_path: Path, journal: str
) -> None:
    db = tmp_path / "app.db"
    _make_db(db, journal)
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(w), str(stop)], stdout=subprocess.PIPE
        )
        for w in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 30
        while min(v for _, _, v in _state(db).values()) < 20:  # writers are going
            assert time.monotonic() < deadline
            time.sleep(0.02)
        before = _state(db)
        result = backup_sqlite(memory_repo, str(db))
        after = _state(db)
    finally:
        stop.touch()
        done = [int(p.communicate(timeout=60)[0]) for p in writers]
    assert all(p.returncode == 0 for p in writers)
    src = result.snapshot.source
    assert src["kind"] == "sqlite" and src["journal_mode"] == journal
    restored = tmp_path / "restored.db"
    out = restore_sqlite(memory_repo, "latest", str(restored))
    assert out.integrity == "ok"
    state = _state(restored)
    for w in range(WRITERS):
        rows_a, rows_b, counter = state[w]
        assert rows_a == rows_b == counter  # no half transaction
        assert before[w][2] <= counter <= after[w][2] <= done[w]
    # the writers did commit while the copy ran (else this proves little)
    assert sum(after[w][2] - before[w][2] for w in range(WRITERS)) > 0
    assert not list(tmp_path.glob(".*safehold*")), "temporary copies left behind"


def test_restore_refuses_to_clobber_and_checks_integrity(
    memory_repo: Repository, tmp_path: Path
) -> None:
    db = tmp_path / "small.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
    conn.commit()
    conn.close()
    backup_sqlite(memory_repo, str(db))
    with pytest.raises(InvalidArgument, match="exists"):
        restore_sqlite(memory_repo, "latest", str(db))
    (tmp_path / "small.db-wal").write_bytes(b"stale")  # must not be replayed into the copy
    restore_sqlite(memory_repo, "latest", str(db), overwrite=True)
    assert sqlite3.connect(db).execute("SELECT sum(x) FROM t").fetchone()[0] == 3
    assert not (tmp_path / "small.db-wal").exists()
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(SqliteError, match="failed"):
        backup_sqlite(memory_repo, str(tmp_path / "junk.db"))
    assert len(memory_repo.list_snapshots()) == 1


def test_cli_round_trip(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    db = tmp_path / "cli.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE t(x); INSERT INTO t VALUES ('hello');")
    conn.commit()
    conn.close()
    doc = json.loads(cli.run("--json", "sqlite", "backup", db, "--as", "apps/cli.db").stdout)
    assert doc["source"]["page_count"] >= 2
    doc = json.loads(
        cli.run("--json", "sqlite", "restore", "latest", "--to", tmp_path / "r.db").stdout
    )
    assert doc["integrity_check"] == "ok"
    assert sqlite3.connect(tmp_path / "r.db").execute("SELECT x FROM t").fetchone()[0] == "hello"


def test_a_corrupt_copy_is_not_put_in_place(memory_repo: Repository, tmp_path: Path) -> None:
    """integrity_check guards the restore: a damaged stored copy leaves the target alone."""
    import io

    from safehold.sources.command import StreamSpec, save_stream

    db = tmp_path / "good.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT); CREATE INDEX ty ON t(y);"
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3000)"
        " INSERT INTO t SELECT i, hex(randomblob(20)) FROM r;"
    )
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(3 * page + 100, 3 * page + 400):  # scribble over a b-tree page
        data[offset] = 0x5A
    spec = StreamSpec("sqlite/good.db", source={"kind": "sqlite"})
    save_stream(memory_repo, io.BytesIO(bytes(data)), spec)
    target = tmp_path / "live.db"
    target.write_bytes(b"the current database")
    with pytest.raises(SqliteError, match="fails integrity_check"):
        restore_sqlite(memory_repo, "latest", str(target), overwrite=True)
    assert target.read_bytes() == b"the current database"
    assert not list(tmp_path.glob(".*safehold*"))
