"""The MariaDB fixture: one scratch server for the whole session (imported by conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sources.mysql_server import MariaServer, missing_programs, mysql_dir

__all__ = ["maria"]


@pytest.fixture(scope="session")
def maria() -> Iterator[MariaServer]:
    """A MariaDB server with binlog on; tests create their own databases in it."""
    missing = missing_programs()
    if missing:
        pytest.fail(
            f"MariaDB programs missing: {', '.join(missing)} "
            "(apt-get install mariadb-server mariadb-backup mariadb-client)"
        )
    with mysql_dir() as base:
        server = MariaServer(base, "primary").install()
        server.start()
        try:
            yield server
        finally:
            server.stop()
