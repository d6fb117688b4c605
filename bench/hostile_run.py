"""Hostile repositories at the size issue 13 reported them: time and peak memory of each
reading command, under a 1 GiB address-space limit.

    .venv/bin/python bench/hostile_run.py bomb deep wide

- bomb: 40 trees of two entries naming the tree below (2^41 paths), one lost blob;
- deep: a chain of 30,000 directories;
- wide: one tree of 2,000,000 identical entries (80 MB of JSON).

Each repository is built with the test helpers (tests/archive/hostile.py) under
/tmp/safehold-hostile; every command runs in a child under GNU time and RLIMIT_AS 1 GiB.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.archive.helpers import deep_tree
from tests.archive.hostile import (
    hostile_repo,
    remove_tree,
    save_raw_tree_text,
    save_snapshot,
    tree_of,
)
from tests.conftest import PASSWORD

from safehold.archive.tree import Node
from safehold.repo.repository import Repository

BASE = Path("/tmp/safehold-hostile")
LIMIT = 1 << 30


def build(which: str) -> Repository:
    remove_tree(BASE / which)  # a restored chain is too deep for shutil.rmtree
    repo = hostile_repo(BASE / which / "repo")
    if which == "wide":
        entry = b'{"name":"x","type":"fifo","mode":420}'
        text = b'{"nodes":[' + b",".join([entry] * 2_000_000) + b"]}"
        save_snapshot(repo, save_raw_tree_text(repo, text))
    elif which == "deep":
        save_snapshot(repo, deep_tree(repo, 30_000))
    else:
        lost = Node(name=b"lost", type="file", size=5, content=[os.urandom(32)])
        tree = tree_of(repo, [lost])
        for _ in range(40):
            subdirs = [Node(name=n, type="dir", mode=0o755, subtree=tree) for n in (b"a", b"b")]
            tree = tree_of(repo, subdirs)
        save_snapshot(repo, tree)
    return repo


def measure(which: str, repo: Repository, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env |= {"SAFEHOLD_REPOSITORY": repo.store.location, "SAFEHOLD_PASSWORD": PASSWORD.decode()}
    started = time.monotonic()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "safehold", *args],
        env=env,
        capture_output=True,
        timeout=1800,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT)),
    )
    lines = proc.stderr.decode(errors="replace").splitlines()
    peak = int(lines[-1]) // 1024
    first = lines[0][:90] if len(lines) > 1 else ""
    print(
        f"| {which} | {' '.join(args[:2])} | {proc.returncode} | {time.monotonic() - started:.1f}"
        f" | {peak} | {len(lines) - 1} | {first} |",
        flush=True,
    )


def main() -> None:
    print("| repository | command | exit | s | peak RSS MiB | stderr lines | first line |")
    print("|---|---|---|---|---|---|---|")
    for which in sys.argv[1:] or ["bomb", "deep", "wide"]:
        repo = build(which)
        target = str(BASE / which / "target")
        for args in (
            ["restore", "latest", "--target", target],
            ["ls", "latest"],
            ["check"],
            ["check", "--read-data"],
            ["stats"],
        ):
            measure(which, repo, *args)
        remove_tree(BASE / which)


if __name__ == "__main__":
    main()
