"""A restored cluster runs with the pg_hba.conf of its backup: when that refuses the
connection `pg restore --start` watches recovery through (Patroni's `local all all peer`
refuses root connecting as postgres; here a password is required), the restore says so
at once in one line instead of waiting out its timeout (an hour by default)."""

from __future__ import annotations

import time

from tests.sources.pg_fixtures import PgEnv


def test_a_refused_login_fails_the_restore_at_once(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("hba")
    # on disk only (no reload): the running primary still trusts the test's connections
    (primary.pgdata / "pg_hba.conf").write_text("local all all scram-sha-256\n")
    pg_env.backup(primary, "full")
    primary.wait_archived()
    began = time.monotonic()
    restored, proc = pg_env.restore(
        "refused", "--start", "--connect-host", str(pg_env.base), "--timeout", "120",
        start=False, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "refuses the connection that watches its recovery" in lines[0]
    assert "no password supplied" in lines[0] and "--connect-host" in lines[0]
    assert time.monotonic() - began < 100  # not the 120 s timeout
    restored.stop()
