"""One table back from a point in time: ``safehold pg restore-table``.

A logical dump holds the table as of the dump, not as of just before the mistake, and
``pg_restore -t`` of it restores rows without the primary key, indexes or constraints.
So: point-in-time recovery of the whole cluster into a sandbox (a temporary directory,
``archive_mode = off``, reachable only on a private Unix socket), to the time given;
then ``pg_dump -t`` of the table from the sandbox, which writes the table with its
primary key, indexes, constraints, triggers, owned sequences and privileges, piped into
``psql --single-transaction`` on the live cluster. Either under a new name (the table, its
indexes and sequences are renamed in the sandbox first, so nothing collides with the
originals) or in place of the damaged table (dropped in the same transaction). The
sandbox is stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import psycopg

from safehold.archive.progress import Progress
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.sources import external
from safehold.sources.postgres.catalog import RecoveryTarget
from safehold.sources.postgres.physical import PostgresError
from safehold.sources.postgres.recovery import (
    RecoveryOptions,
    RecoveryResult,
    owner_name,
    restore_base,
    start_and_wait,
)
from safehold.sources.postgres.recovery_plan import check_reached, plan_recovery

__all__ = ["TableRequest", "TableResult", "restore_table"]

SANDBOX_PORT = 5432  # on a private socket directory: nothing else listens there
NAME_MAX = 63  # PostgreSQL's identifier length


@dataclass
class TableRequest:
    """``table`` (``[schema.]name``) of ``database`` at ``time``, into the cluster that
    ``target_conninfo`` (without dbname) reaches: as ``new_name`` or replacing it."""

    table: str
    database: str
    time: str
    target_conninfo: str
    restore_command: str
    new_name: str | None = None
    replace: bool = False
    system_id: str | None = None
    work_dir: str | None = None
    timeout: float = 3600


@dataclass
class TableResult:
    table: str
    rows: int
    recovery: RecoveryResult


def restore_table(
    repo: Repository, request: TableRequest, progress: Progress | None = None
) -> TableResult:
    if request.replace == (request.new_name is not None):
        raise InvalidArgument("give either a new name (--as) or --replace")
    plan = plan_recovery(repo, RecoveryTarget(time=request.time), system_id=request.system_id)
    sandbox = tempfile.mkdtemp(prefix="safehold-table-", dir=request.work_dir)
    os.chmod(sandbox, 0o711)  # the cluster's owner must reach its data directory inside
    data, sockets = os.path.join(sandbox, "data"), os.path.join(sandbox, "socket")
    try:
        hba = os.path.join(sandbox, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write("local all all trust\n")  # only the private socket below exists
        options = RecoveryOptions(
            target_dir=data,
            target=plan.stop,
            restore_command=request.restore_command,
            timeline=plan.timeline,
            inclusive=plan.inclusive,
            port=SANDBOX_PORT,
            settings={
                "listen_addresses": "",
                "unix_socket_directories": sockets,
                "hba_file": hba,
            },
        )
        result = restore_base(repo, plan.snapshot, options, progress)
        _private_dir(sockets, data)
        os.chmod(hba, 0o644)
        sandbox_info = f"host={sockets} port={SANDBOX_PORT} user=postgres"
        start_and_wait(
            result, data, plan.pg_bin, f"{sandbox_info} dbname=postgres", request.timeout, repo
        )
        check_reached(repo, plan, result.reached_time, result.reached_lsn)
        dbinfo = f"{sandbox_info} dbname={_quote_value(request.database)}"
        schema, name, rows = _find_table(dbinfo, request.table, request.time)
        if request.new_name is not None:
            _rename_in_sandbox(dbinfo, schema, name, request.new_name)
            name = request.new_name
        _copy_table(plan.pg_bin, dbinfo, request, schema, name)
    finally:
        _stop(plan.pg_bin, data)
        shutil.rmtree(sandbox, ignore_errors=True)
    return TableResult(f"{schema}.{name}", rows, result)


def _private_dir(path: str, like: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        st = os.stat(like)
        os.chown(path, st.st_uid, st.st_gid)


def _quote_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise PostgresError(f"cannot connect to the sandbox ({conninfo}): {exc}") from None


def _find_table(conninfo: str, table: str, time: str) -> tuple[str, str, int]:
    """(schema, name, rows) of ``table`` as the sandbox has it."""
    with _connect(conninfo) as conn:
        row = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
            (table,),
        ).fetchone()
        if row is None:
            raise InvalidArgument(f"there was no table {table} at {time}")
        schema, name = str(row[0]), str(row[1])
        count = conn.execute(f"SELECT count(*) FROM {_ident(schema)}.{_ident(name)}").fetchone()
    assert count is not None
    return schema, name, int(count[0])


def _renamed(old: str, table: str, new: str) -> str:
    """An index's or sequence's name for the renamed table (``orders_pkey`` → ``new_pkey``)."""
    name = old.replace(table, new, 1) if table in old else f"{new}_{old}"
    return name[:NAME_MAX]


def _rename_in_sandbox(conninfo: str, schema: str, table: str, new: str) -> None:
    """Rename the table, its indexes (their constraints follow) and owned sequences."""
    with _connect(conninfo) as conn, conn.transaction():
        oid = conn.execute(
            "SELECT %s::regclass::oid", (f"{_ident(schema)}.{_ident(table)}",)
        ).fetchone()
        assert oid is not None
        related = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = %(t)s UNION SELECT c.relname, c.relkind FROM pg_depend d"
            " JOIN pg_class c ON c.oid = d.objid WHERE d.refobjid = %(t)s"
            " AND d.classid = 'pg_class'::regclass AND c.relkind = 'S'",
            {"t": oid[0]},
        ).fetchall()
        for name, kind in related:
            what = "INDEX" if kind in ("i", "I") else "SEQUENCE"
            conn.execute(
                f"ALTER {what} {_ident(schema)}.{_ident(name)} "
                f"RENAME TO {_ident(_renamed(name, table, new))}"
            )
        conn.execute(f"ALTER TABLE {_ident(schema)}.{_ident(table)} RENAME TO {_ident(new)}")


def _copy_table(
    pg_bin: str, sandbox_info: str, request: TableRequest, schema: str, name: str
) -> None:
    """pg_dump -t from the sandbox, piped into psql in one transaction on the target."""
    qualified = f"{_ident(schema)}.{_ident(name)}"
    dump = [os.path.join(pg_bin, "pg_dump"), "-d", sandbox_info, "-t", qualified]
    target = f"{request.target_conninfo} dbname={_quote_value(request.database)}"
    load = [os.path.join(pg_bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target]
    load.append("--single-transaction")
    if request.replace:
        load += ["-c", f"DROP TABLE IF EXISTS {qualified}"]  # the mistake may be a DROP
    load += ["-f", "-"]
    with external.stream(dump) as dumped, external.stream(load, stdin=dumped) as loaded:
        for _ in loaded:
            pass


def _stop(pg_bin: str, data: str) -> None:
    if not os.path.exists(os.path.join(data, "postmaster.pid")):
        return
    external.run(
        external.as_user(
            owner_name(data),
            [os.path.join(pg_bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
        ),
        check=False,
    )
