#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, lints, type-checks, tests.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian tools the tests drive (runuser and mount come with util-linux; psmisc for fuser).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  # MariaDB for tests/sources/test_mysql.py (scratch servers), Redis for test_redis.py,
  # PostgreSQL 15 for tests/sources/test_pg_*.py (its programs are not on PATH), Chromium
  # for the dashboard's browser tests (Playwright drives Debian's, not its own download),
  # fuse3 (libfuse3, fusermount3) for tests/e2e/test_mount_cli.py; etcd and HAProxy for
  # tests/standby/ (Patroni comes from pip: the test extra)
  for tool in runuser:util-linux mount:mount mariadbd:mariadb-server mariabackup:mariadb-backup \
      mariadb:mariadb-client redis-server:redis-server fusermount3:fuse3 \
      etcd:etcd-server etcdctl:etcd-client haproxy:haproxy setpriv:util-linux \
      /usr/lib/postgresql/15/bin/initdb:postgresql-15 \
      /usr/lib/postgresql/15/bin/pg_dump:postgresql-client-15 chromium:chromium; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi

# Azurite (the Azure Blob emulator the storage tests start) comes from npm.
if [ "$(id -u)" = 0 ] && ! command -v azurite-blob >/dev/null; then
  if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
  fi
  npm install -g --no-audit --no-fund --loglevel=error azurite >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true

echo "== ruff"
.venv/bin/ruff check src tests bench docs
.venv/bin/ruff format --check src tests bench docs
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest -q "$@"
