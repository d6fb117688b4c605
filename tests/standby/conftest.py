"""Fixtures of the standby tests: the PostgreSQL repository and wrapper of the pg tests."""

from tests.sources.pg_fixtures import pg_env  # noqa: F401  (repository + safehold wrapper)
