#!/usr/bin/env bash
# Production install that every user can run: PostgreSQL's archive_command runs as postgres
# and MariaDB's tools as mysql, and neither can run a Python under /root (mode 700), where
# the development .venv of scripts/demo.sh and scripts/test.sh may live.
# A virtual environment under PREFIX made from the system Python 3.11+, readable by all,
# holding a copy of safehold (not a link to this checkout), with `safehold` linked into BINDIR.
# Usage: sudo scripts/install.sh [PREFIX [BINDIR]]   (default /opt/safehold and /usr/local/bin)
# Upgrade: the same command again.  Remove: rm -r PREFIX BINDIR/safehold
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
prefix=${1:-/opt/safehold}
bindir=${2:-/usr/local/bin}
python=${PYTHON:-/usr/bin/python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "install.sh: $python is missing or older than Python 3.11 (set PYTHON=...)" >&2
  exit 1
fi
case "$(realpath -m "$python")" in
  /root/*|/home/*) echo "install.sh: $python lives in a home directory that service users" \
    "may not reach; use the system Python (PYTHON=/usr/bin/python3)" >&2; exit 1 ;;
esac
if ! "$python" -m venv --help >/dev/null 2>&1; then
  echo "install.sh: $python has no venv module: apt-get install python3-venv" >&2
  exit 1
fi

"$python" -m venv "$prefix"
"$prefix/bin/pip" install -q --disable-pip-version-check . 2>&1 | grep -v '^WARNING: Location' || true
# Bytecode now, as root: postgres and mysql cannot write it into PREFIX later, and without it
# every archive_command and restore_command compiles safehold again (0.1 s of CPU per call).
# pip compiles by default, but PIP_NO_COMPILE or a pip.conf can turn that off.
"$prefix/bin/python" -m compileall -q "$prefix/lib" >/dev/null
chmod -R a+rX "$prefix"
mkdir -p "$bindir"
ln -sfn "$prefix/bin/safehold" "$bindir/safehold"
version=$("$bindir/safehold" --version)
echo "installed $version in $prefix; $bindir/safehold runs it for every user"
for user in postgres mysql; do
  if id "$user" >/dev/null 2>&1 && command -v runuser >/dev/null && [ "$(id -u)" = 0 ]; then
    if runuser -u "$user" -- "$bindir/safehold" --version >/dev/null; then
      echo "checked: $user runs $bindir/safehold"
    else
      echo "install.sh: $user cannot run $bindir/safehold (is $prefix or a parent directory closed to it?)" >&2
      exit 1
    fi
  fi
done
