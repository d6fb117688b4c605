"""Fixtures for the database source tests: scratch servers started by the tests."""

from tests.sources.mysql_fixtures import maria  # noqa: F401  (MariaDB session server)
from tests.sources.pg_fixtures import pg_env  # noqa: F401  (PostgreSQL: repository + clusters)
