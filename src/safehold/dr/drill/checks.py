"""The built-in data checks of a drill, one per restored source, by kind: files against the
snapshot's content hashes, SQLite's integrity_check, PostgreSQL's consistency, pg_amcheck on
every database and the row counts, Redis's key count against the backup's record.

Each returns (passed, one sentence, figures); the figures (files and bytes compared, rows
per table) go into the report.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from safehold.archive.browse import find_node, walk
from safehold.archive.tree import Node
from safehold.dr.recovery.plan import SourcePlan
from safehold.dr.recovery.report import SourceOutcome
from safehold.errors import SafeholdError
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["CheckOutcome", "check_source"]

CheckOutcome = tuple[bool, str, dict[str, Any]]
SHOWN = 3  # differences named in the sentence


def check_source(
    repo: Repository, snap: Snapshot, sp: SourcePlan, outcome: SourceOutcome
) -> CheckOutcome:
    """The built-in check of one restored source."""
    if sp.kind == "files":
        return _files(repo, snap, sp)
    if sp.kind == "sqlite":
        return _sqlite(sp.target)
    if sp.kind == "postgres":
        return _postgres(sp, outcome)
    if sp.kind == "redis":
        return _redis(snap, sp)
    if sp.kind == "mysql":
        return _mysql(sp, outcome)
    return True, f"no built-in check for a {sp.kind} source (restored as files)", {}


# -- files ------------------------------------------------------------------------------


def _files(repo: Repository, snap: Snapshot, sp: SourcePlan) -> CheckOutcome:
    files = size = 0
    bad: list[str] = []
    for old, new in sp.paths.items():
        node = find_node(repo, snap, old)
        if node is None:
            bad.append(f"{old} is not in the snapshot")
            continue
        entries = [(b"", node)] if node.type == "file" else walk(repo, node.subtree, b"")
        for rel, entry in entries:
            if entry.type != "file":
                continue
            path = os.path.join(new, os.fsdecode(rel.lstrip(b"/"))) if rel else new
            files, size = files + 1, size + entry.size
            problem = _compare(repo, path, entry)
            if problem:
                bad.append(f"{path}: {problem}")
    figures = {"files": files, "bytes": size, "differing": len(bad)}
    if bad:
        shown = "; ".join(bad[:SHOWN]) + ("; ..." if len(bad) > SHOWN else "")
        return False, f"{len(bad)} of {files} files differ from the snapshot: {shown}", figures
    return True, f"{files} files ({size} bytes) match the snapshot's content hashes", figures


def _compare(repo: Repository, path: str, node: Node) -> str | None:
    """Why the file at ``path`` is not the node's content (None: it is)."""
    try:
        with open(path, "rb") as f:
            for blob_id in node.content:
                data = f.read(repo.locate(blob_id).raw_length)
                if repo.key.blob_id(data) != blob_id:
                    return f"content differs at byte {f.tell() - len(data)}"
            if f.read(1):
                return "longer than in the snapshot"
    except OSError as exc:
        return exc.strerror or str(exc)
    except SafeholdError as exc:
        return str(exc)
    return None


# -- SQLite -----------------------------------------------------------------------------


def _sqlite(path: str) -> CheckOutcome:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = [str(r[0]) for r in db.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        return False, f"{path}: {exc}", {}
    if rows == ["ok"]:
        return True, f"{path}: integrity_check ok", {}
    return False, f"{path}: integrity_check: {'; '.join(rows[:SHOWN])}", {"problems": len(rows)}


# -- PostgreSQL -------------------------------------------------------------------------


def _postgres(sp: SourcePlan, outcome: SourceOutcome) -> CheckOutcome:
    import psycopg

    from safehold.sources import external
    from safehold.sources.postgres.status import pg_bin_dir

    if not outcome.started:
        return False, "the server did not reach consistency", {}
    conninfo = f"host={sp.host} port={sp.port} user=postgres connect_timeout=10"
    try:
        with psycopg.connect(f"{conninfo} dbname=postgres", autocommit=True) as conn:
            names = [
                str(r[0])
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname"
                )
            ]
        rows = {name: _row_counts(f"{conninfo} dbname={name}") for name in names}
    except psycopg.Error as exc:
        return False, f"cannot read the recovered cluster: {str(exc).strip().splitlines()[0]}", {}
    amcheck = os.path.join(pg_bin_dir(sp.version), "pg_amcheck")
    argv = [amcheck, "-h", str(sp.host), "-p", str(sp.port), "-U", "postgres", "--all"]
    proc = external.run([*argv, "--install-missing", "--heapallindexed"], check=False)
    total = sum(sum(t.values()) for t in rows.values())
    figures = {"databases": len(names), "rows": rows, "amcheck_exit": proc.returncode}
    if proc.returncode != 0:
        found = (proc.stdout or proc.stderr).decode(errors="replace").strip().splitlines()
        return False, f"pg_amcheck exited {proc.returncode}: {' '.join(found[:SHOWN])}", figures
    return (
        True,
        f"consistent at {outcome.reached}; pg_amcheck clean on {len(names)} databases;"
        f" {total} rows in {sum(len(t) for t in rows.values())} tables",
        figures,
    )


def _row_counts(conninfo: str) -> dict[str, int]:
    """Rows of every user table of one database, counted."""
    import psycopg
    from psycopg import sql

    counts: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT schemaname, relname FROM pg_stat_user_tables ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            row = conn.execute(query).fetchone()
            counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


# -- MariaDB ----------------------------------------------------------------------------


def _mysql(sp: SourcePlan, outcome: SourceOutcome) -> CheckOutcome:
    """CHECK TABLE on every user table, and their rows counted."""
    from safehold.sources.mysql.client import MysqlConn
    from safehold.sources.mysql.physical import server_files

    if not outcome.started:
        return False, "the server did not start", {}
    conn = MysqlConn(socket=server_files(sp.target)["sock"], user="root")
    try:
        tables = [
            f"`{schema}`.`{name}`"
            for schema, name in conn.query(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE"
                " table_schema NOT IN ('mysql', 'information_schema', 'performance_schema',"
                " 'sys') AND table_type = 'BASE TABLE' ORDER BY 1, 2"
            )
        ]
        rows = {t: int(conn.query(f"SELECT count(*) FROM {t}")[0][0]) for t in tables}
        checked = conn.query(f"CHECK TABLE {', '.join(tables)}") if tables else []
    except SafeholdError as exc:
        return False, f"cannot read the recovered server: {exc}", {}
    bad = [f"{r[0]}: {r[3]}" for r in checked if r[2] in ("error", "status") and r[3] != "OK"]
    figures = {"tables": len(tables), "rows": rows}
    if bad:
        return False, f"CHECK TABLE: {'; '.join(bad[:SHOWN])}", figures
    return (
        True,
        f"binlogs replayed to {outcome.reached}; CHECK TABLE clean on {len(tables)} tables;"
        f" {sum(rows.values())} rows",
        figures,
    )


# -- Redis ------------------------------------------------------------------------------


def _keys(keyspace: Any) -> int:
    """Keys over every database of an INFO keyspace answer (``db0: keys=3,expires=0``)."""
    total = 0
    for value in (keyspace or {}).values():
        fields = dict(p.split("=", 1) for p in str(value).split(",") if "=" in p)
        total += int(fields.get("keys", 0))
    return total


def _redis(snap: Snapshot, sp: SourcePlan) -> CheckOutcome:
    from safehold.sources import external

    proc = external.run(
        ["redis-cli", "-h", str(sp.host), "-p", str(sp.port), "INFO", "keyspace"], check=False
    )
    lines = proc.stdout.decode(errors="replace").splitlines()
    found = dict(line.strip().split(":", 1) for line in lines if line.startswith("db"))
    got, expected = _keys(found), _keys(snap.source.get("keyspace"))
    figures = {"keys": got, "expected_keys": expected}
    if proc.returncode != 0:
        return False, f"redis-cli exited {proc.returncode}", figures
    if got != expected:
        return False, f"{got} keys loaded, the backup recorded {expected}", figures
    return True, f"the RDB loaded: {got} keys, as the backup recorded", figures
