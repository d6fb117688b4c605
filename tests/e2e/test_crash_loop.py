"""Crash loop: kill -9 backups and prunes at random moments; nothing kept is ever lost.

A seeded generator picks, round after round, how the data changes and when the process
dies. After every round `check` must pass (unreferenced packs are allowed: they are what a
killed run leaves, and the next prune removes them) and every snapshot still in the
repository must restore to exactly the files it was taken from.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from safehold.ops.check import check
from safehold.repo.repository import Repository
from safehold.storage import LocalStore, ObjectStore
from safehold.storage.s3 import S3Store
from tests.archive.helpers import restore
from tests.conftest import CHEAP_KDF, CLI, PASSWORD, SAFEHOLD
from tests.e2e.test_cli import restored, tree_state
from tests.servers import S3Server

SEED = 20261126
ROUNDS = 20  # of each: backups killed, prunes killed
S3_ROUNDS = 5
PACK_SIZE = 96 * 1024  # many small packs: a kill lands between two of them
FILES = 40


def _mutate(rng: random.Random, data: Path) -> None:
    """Change a few files: rewrite some, add some, delete some."""
    names = sorted(p.name for p in data.iterdir())
    for name in rng.sample(names, k=min(len(names), rng.randint(1, 6))):
        if rng.random() < 0.3:
            (data / name).unlink()
        else:
            (data / name).write_bytes(rng.randbytes(rng.randint(0, 150_000)))
    for _ in range(rng.randint(1, 6)):
        (data / f"n{rng.randrange(10**6):06}").write_bytes(rng.randbytes(rng.randint(1, 150_000)))


def _run_killed(cli: CLI, rng: random.Random, window: float, *args: str) -> bool:
    """Run a command, SIGKILL it after a random share of ``window``; True if it was killed."""
    proc = subprocess.Popen(
        [*SAFEHOLD, *args], env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(rng.uniform(0.1, 1.0) * window)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode == -signal.SIGKILL


def _timed(cli: CLI, *args: str) -> float:
    started = time.monotonic()
    cli.run(*args)
    return time.monotonic() - started


def _snapshot_ids(store: ObjectStore) -> set[str]:
    """The repository's snapshots, read in-process (a command per look doubled the rounds'
    start-up cost; the commands under test are the killed ones)."""
    return {s.id for s in Repository.open(store, PASSWORD).list_snapshots()}


def _verify(
    store: ObjectStore,
    expected: dict[str, dict[str, tuple[object, ...]]],
    data: Path,
    work: Path,
) -> None:
    """check passes and every snapshot restores as taken (in-process: no start-up cost)."""
    repo = Repository.open(store, PASSWORD)
    result = check(repo)
    assert result.ok, result.errors
    assert all("unreferenced pack" in w.message for w in result.warnings), result.warnings
    for snapshot in repo.list_snapshots():
        target = work / snapshot.short_id
        restore(repo, snapshot.tree, target)
        assert tree_state(restored(target, data)) == expected[snapshot.id], snapshot.id
        shutil.rmtree(target)


def crash_rounds(cli: CLI, store: ObjectStore, rounds: int, seed: int, work: Path) -> None:
    """``rounds`` killed backups and ``rounds`` killed prunes, verified after each."""
    rng = random.Random(seed)
    Repository.init(store, PASSWORD, CHEAP_KDF, pack_size=PACK_SIZE)
    data = work / "data"
    data.mkdir()
    for i in range(FILES):
        (data / f"f{i:03}").write_bytes(rng.randbytes(rng.randint(0, 150_000)))
    expected: dict[str, dict[str, tuple[object, ...]]] = {}

    durations = {"backup": 0.0}  # of the last whole backup: the next kill lands inside one

    def backup(kill: bool) -> bool:
        state = tree_state(data)
        before = _snapshot_ids(store)
        if kill:
            killed = _run_killed(cli, rng, durations["backup"], "backup", str(data), "-q")
        else:
            killed, durations["backup"] = False, _timed(cli, "backup", str(data), "-q")
        for new in _snapshot_ids(store) - before:
            expected[new] = state
        return killed

    backup(kill=False)
    kills = {"backup": 0, "prune": 0}
    for _ in range(rounds):
        _mutate(rng, data)
        kills["backup"] += backup(kill=True)
        _verify(store, expected, data, work / "restore")

        _mutate(rng, data)
        backup(kill=False)
        cli.run("forget", "--keep-last", str(rng.randint(2, 4)))
        # planning is most of a prune's time; the deletions follow it
        window = 1.5 * _timed(cli, "prune", "--dry-run", "--max-unused", "0")
        kills["prune"] += _run_killed(cli, rng, window, "prune", "--max-unused", "0")
        _verify(store, expected, data, work / "restore")

    # most kills must land before the process is done, or the test proves little
    assert kills["backup"] >= rounds * 0.5 and kills["prune"] >= rounds * 0.4, kills
    cli.run("prune", "--max-unused", "0")  # the next prune finishes every job left
    doc = json.loads(cli.run("--json", "check", "--read-data").stdout)
    assert doc["ok"] and doc["warnings"] == [], doc
    _verify(store, expected, data, work / "restore")
    assert all(lock["stale"] for lock in json.loads(cli.run("--json", "locks").stdout))


def test_crash_loop(cli: CLI, tmp_path: Path) -> None:
    crash_rounds(cli, LocalStore(cli.repo), ROUNDS, SEED, tmp_path)


def test_crash_loop_on_s3(cli: CLI, seaweedfs: S3Server, tmp_path: Path) -> None:
    """The same on an object store: uploads and deletes cut by SIGKILL mid-request."""
    location = seaweedfs.location(f"crash-{SEED}", "repo")
    cli.env.update(seaweedfs.env(), SAFEHOLD_REPOSITORY=location)
    store = S3Store(
        location, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    store.create()
    crash_rounds(cli, store, S3_ROUNDS, SEED + 1, tmp_path)
