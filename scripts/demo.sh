#!/usr/bin/env bash
# The main job on the embedded default: a local repository; init, back up, list, restore, verify.
# Usage: scripts/demo.sh [DIRECTORY_TO_BACK_UP]   (default: this project's src/)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# installed once, and again when pyproject.toml (the dependencies) changed since: pip asks
# the package index about every dependency, which takes most of a minute
if [ ! -x .venv/bin/safehold ] || [ pyproject.toml -nt .venv/bin/safehold ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
fi

source_dir=$(realpath "${1:-src}")
work=$(mktemp -d /tmp/safehold-demo.XXXXXX)
export SAFEHOLD_REPOSITORY="$work/repo"
export SAFEHOLD_PASSWORD="demo-password-change-me"
sh() { echo "+ safehold $*" >&2; .venv/bin/safehold "$@"; }

sh init
sh backup "$source_dir" --tag demo
echo "(changing nothing and backing up again: nothing is re-read)" >&2
sh backup "$source_dir" --tag demo
sh snapshots
sh ls latest "$source_dir" > "$work/ls.txt"
head -n 5 "$work/ls.txt"; echo "... $(wc -l < "$work/ls.txt") entries" >&2
sh stats
sh restore latest --target "$work/restore" --verify
# Compare as the backup saw the tree: symlinks are compared as links (their targets' text),
# never followed, since a relative link may point outside the restored copy.
echo "+ diff -r --no-dereference $source_dir $work/restore$source_dir" >&2
diff -r --no-dereference "$source_dir" "$work/restore$source_dir"
echo "restored tree is identical to $source_dir (file contents, directory entries and" \
  "symlink targets compared with diff -r --no-dereference; restore --verify checked each file" \
  "against the repository); repository and restore are in $work"
