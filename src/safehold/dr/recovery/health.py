"""Health checks of a recovered service: an SQL query with its expected answer, an HTTP GET
with its expected status, a TCP connect, any command. Each is tried until it passes or its
timeout ends, and says in one sentence what it found."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from safehold.dr.recovery.plan import PlannedCheck, RecoveryPlan

__all__ = ["run_check"]

RETRY_EVERY = 0.5


def run_check(check: PlannedCheck, plan: RecoveryPlan) -> tuple[bool, str]:
    """(passed, what was found), retried until ``check.timeout``."""
    deadline = time.monotonic() + check.timeout
    while True:
        passed, found = _attempt(check, plan)
        if passed or time.monotonic() >= deadline:
            return passed, found
        time.sleep(RETRY_EVERY)


def _attempt(check: PlannedCheck, plan: RecoveryPlan) -> tuple[bool, str]:
    if check.kind == "sql":
        return _sql(check, plan)
    if check.kind == "http":
        return _http(check)
    if check.kind == "tcp":
        return _tcp(check.spec)
    return _command(check.spec)


def _sql(check: PlannedCheck, plan: RecoveryPlan) -> tuple[bool, str]:
    import psycopg

    assert check.source is not None
    sp = plan.source(check.source)
    if sp.kind == "mysql":
        return _mysql(check, sp.target)
    conninfo = (
        f"host={sp.host} port={sp.port} dbname={check.database} user={check.user} connect_timeout=5"
    )
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute(check.spec).fetchone()
    except psycopg.Error as exc:
        return False, f"query failed: {str(exc).strip().splitlines()[0]}"
    got = None if row is None else _sql_text(row[0])
    if check.expect is None:
        return row is not None, f"returned {got!r}"
    return got == check.expect, f"returned {got!r}, expected {check.expect!r}"


def _mysql(check: PlannedCheck, datadir: str) -> tuple[bool, str]:
    """The query through the mariadb client on the recovered server's socket (its text
    output: NULL comes back as 'NULL')."""
    from safehold.errors import SafeholdError
    from safehold.sources.mysql.client import MysqlConn
    from safehold.sources.mysql.physical import server_files

    conn = MysqlConn(socket=server_files(datadir)["sock"], user=check.user)
    use = f"USE `{check.database}`; " if check.database else ""
    try:
        rows = conn.query(use + check.spec)
    except SafeholdError as exc:
        return False, f"query failed: {str(exc).strip().splitlines()[0]}"
    got = rows[0][0] if rows and rows[0] else None
    if check.expect is None:
        return got is not None, f"returned {got!r}"
    return got == check.expect, f"returned {got!r}, expected {check.expect!r}"


def _sql_text(value: object) -> str | None:
    """A value as psql prints it: booleans as t/f, NULL as None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _http(check: PlannedCheck) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(check.spec, timeout=5) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return False, f"GET {check.spec} failed: {getattr(exc, 'reason', exc)}"
    return status == check.status, f"GET {check.spec}: HTTP {status}, expected {check.status}"


def _tcp(spec: str) -> tuple[bool, str]:
    host, _, port = spec.rpartition(":")
    if not port.isdigit():
        return False, f"{spec!r} is not HOST:PORT"
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5):
            return True, f"{spec} accepts connections"
    except OSError as exc:
        return False, f"{spec}: {exc.strerror or exc}"


def _command(spec: str) -> tuple[bool, str]:
    from safehold.errors import SafeholdError
    from safehold.sources import external
    from safehold.sources.command import parse_command

    try:
        proc = external.run(parse_command(spec), check=False, timeout=300)
    except SafeholdError as exc:  # missing program, timeout, a command that does not parse
        return False, str(exc)
    if proc.returncode == 0:
        return True, f"{spec!r} exited 0"
    tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return False, f"{spec!r} exited {proc.returncode}" + (f": {tail[0]}" if tail else "")
