"""Connection strings: a URL DSN works with separate settings, and no error shows a password."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from safehold.errors import SafeholdError
from safehold.sources.postgres.physical import connect, conninfo_of
from tests.conftest import SAFEHOLD


def test_a_url_dsn_takes_separate_settings_and_a_default_database() -> None:
    merged = conninfo_to_dict(conninfo_of("postgresql://u:pw@db.example/app", None, 6543, None))
    assert merged == {
        "user": "u",
        "password": "pw",
        "host": "db.example",
        "port": "6543",
        "dbname": "app",
    }
    plain = conninfo_to_dict(conninfo_of("host=h user=u", None, None, "v"))
    assert plain == {"host": "h", "user": "v", "dbname": "postgres"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:s3cretpw@127.0.0.1:{port}/db",
        "host=127.0.0.1 port={port} user=u password=s3cretpw",
        "host=127.0.0.1 port={port} password='s3cretpw",  # unparsable: echoed not at all
    ],
)
def test_a_failed_connection_is_one_line_without_the_password(dsn: str) -> None:
    with pytest.raises(SafeholdError) as failed:
        connect(conninfo_of(dsn.format(port=_closed_port()), None, None, None))
    message = str(failed.value)
    assert "s3cretpw" not in message and "\n" not in message


def test_pg_backup_with_a_url_dsn_names_no_password(tmp_path: Path) -> None:
    dsn = f"postgresql://u:s3cretpw@127.0.0.1:{_closed_port()}/db"
    env = {
        "SAFEHOLD_REPOSITORY": str(tmp_path / "repo"),
        "SAFEHOLD_PASSWORD": "pw",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [*SAFEHOLD, "init", "-q", "--kdf-memory", "256", "--kdf-iterations", "1"],
        env=env,
        check=True,
    )
    ran = subprocess.run(
        [*SAFEHOLD, "pg", "backup", "--pgdata", str(tmp_path), "--dsn", dsn],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode != 0 and "s3cretpw" not in ran.stderr
    assert "cannot connect" in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
