"""Several processes on one repository: shared backups, prune against backups, unlock.

Every case runs real `safehold` processes at the same time against one repository on
disk, then proves with `check` and byte-for-byte restores that nothing was lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.conftest import CLI, SAFEHOLD
from tests.e2e.test_cli import random_bytes, restored, tree_state
from tests.e2e.test_faults import one_line_error, wait_for


def _start(cli: CLI, *args: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SAFEHOLD, *map(str, args)],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes], what: str) -> bytes:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}: {err.decode()}"
    return out


def _data(root: Path, files: int, size: int, seed: int) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:03}").write_bytes(random_bytes(size, seed * 1000 + i))
    return root


def _assert_clean(cli: CLI) -> None:
    doc = json.loads(cli.run("--json", "check", "--read-data").stdout)
    assert doc["ok"], doc["errors"]


def _assert_restores(cli: CLI, snapshot: str, source: Path, target: Path) -> None:
    state = tree_state(source)
    cli.run("restore", snapshot, "--target", target, "--path", source, "--host", "")
    assert tree_state(restored(target, source)) == state


def _latest_for(cli: CLI, path: Path) -> str:
    docs = json.loads(cli.run("--json", "snapshots", "--path", path).stdout)
    assert len(docs) == 1, docs
    return str(docs[0]["id"])


def test_two_backups_at_once(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    one = _data(tmp_path / "one", 30, 200_000, 1)
    two = _data(tmp_path / "two", 30, 200_000, 2)
    first = _start(cli, "backup", one, "-q")
    second = _start(cli, "backup", two, "-q")
    _finish(first, "first backup")
    _finish(second, "second backup")
    _assert_clean(cli)
    for source in (one, two):
        state = tree_state(source)
        cli.run("restore", _latest_for(cli, source), "--target", tmp_path / source.name)
        assert tree_state(restored(tmp_path / source.name, source)) == state


def test_prune_waits_for_a_running_backup(cli: CLI, tmp_path: Path) -> None:
    """A prune started during a backup waits (--retry-lock) and then loses none of its data."""
    cli.init()
    old = _data(tmp_path / "old", 10, 100_000, 3)
    cli.run("backup", old, "-q")
    cli.run("forget", _latest_for(cli, old))  # now all of old's data is garbage
    big = _data(tmp_path / "big", 40, 1_000_000, 4)
    backup = _start(cli, "backup", big, "-q")
    wait_for(lambda: any(cli.repo.glob("locks/*")), "the backup's lock")
    prune = _start(cli, "--retry-lock", "2m", "--json", "prune")
    _finish(backup, "backup")
    doc = json.loads(_finish(prune, "prune"))
    assert doc["packs_deleted"] >= 1  # old's packs went; big's stayed
    _assert_clean(cli)
    state = tree_state(big)
    cli.run("restore", _latest_for(cli, big), "--target", tmp_path / "r")
    assert tree_state(restored(tmp_path / "r", big)) == state


def test_backup_refused_while_prune_holds_the_lock(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    data = _data(tmp_path / "d", 2, 1000, 5)
    holder = _hold_lock(cli, exclusive=True)
    try:
        proc = cli.run("backup", data, check=False)
        line = one_line_error(proc, 11)
        assert "exclusive lock" in line and f"PID {holder.pid}" in line
        assert "safehold unlock" in line
        assert json.loads(cli.run("--json", "snapshots").stdout) == []
        started = time.monotonic()
        proc = cli.run("--retry-lock", "1s", "backup", data, check=False)
        one_line_error(proc, 11)
        assert time.monotonic() - started >= 1.0
        # reading commands take shared locks too; --no-lock reads anyway
        assert cli.run("snapshots", check=False).returncode == 0  # no lock needed
        one_line_error(cli.run("check", check=False), 11)
        assert cli.run("--no-lock", "check").returncode == 0
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock is stale at once on this host
    cli.run("backup", data, "-q")
    locks = json.loads(cli.run("--json", "locks").stdout)
    assert [lock["stale"] for lock in locks] == [True]
    removed = json.loads(cli.run("--json", "unlock").stdout)["removed"]
    assert len(removed) == 1 and removed[0]["pid"] == holder.pid
    assert json.loads(cli.run("--json", "locks").stdout) == []


def test_unlock_remove_all_warns(cli: CLI) -> None:
    cli.init()
    holder = _hold_lock(cli, exclusive=False)
    try:
        proc = cli.run("unlock")
        assert b"removed 0 locks" in proc.stdout  # a live holder's lock is not stale
        proc = cli.run("unlock", "--remove-all")
        assert b"warning: removing all locks" in proc.stderr
        assert b"removed 1 lock\n" in proc.stdout
    finally:
        holder.kill()
        holder.wait()


def _hold_lock(cli: CLI, exclusive: bool) -> subprocess.Popen[bytes]:
    """Another process that takes a lock and keeps it until killed."""
    script = (
        "import sys, time\n"
        "from safehold.repo.repository import Repository\n"
        "from safehold.repo.lock import acquire\n"
        "from safehold.storage import open_store\n"
        "repo = Repository.open(open_store(sys.argv[1]), sys.argv[2].encode())\n"
        f"lock = acquire(repo, exclusive={exclusive})\n"
        "print('locked', flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen(
        [SAFEHOLD[0], "-c", script, str(cli.repo), cli.env["SAFEHOLD_PASSWORD"]],
        stdout=subprocess.PIPE,
        env=cli.env,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
    return proc
