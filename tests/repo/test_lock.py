"""Repository locks: who conflicts with whom, staleness, refresh, and racing lockers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from safehold.errors import LockLost, RepositoryLocked
from safehold.repo.lock import LockInfo, RepoLock, acquire, list_locks, remove_locks
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time


def _plant(repo: Repository, **changes: object) -> str:
    """Write a lock document as another process would have left it."""
    info = replace(LockInfo.mine(exclusive=False), **changes)  # type: ignore[arg-type]
    return repo.save_document("locks", info.to_bytes())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_shared_locks_coexist_and_release(memory_repo: Repository) -> None:
    with acquire(memory_repo, exclusive=False), acquire(memory_repo, exclusive=False):
        assert len(list_locks(memory_repo)) == 2
    assert list_locks(memory_repo) == []


@pytest.mark.parametrize(("held", "wanted"), [(False, True), (True, False), (True, True)])
def test_exclusive_conflicts(memory_repo: Repository, held: bool, wanted: bool) -> None:
    with acquire(memory_repo, exclusive=held):
        with pytest.raises(RepositoryLocked) as info:
            acquire(memory_repo, exclusive=wanted)
        message = str(info.value)
        assert f"PID {os.getpid()}" in message
        assert socket.gethostname() in message
        assert "safehold unlock" in message
        assert len(list_locks(memory_repo)) == 1  # the loser removed its own lock


def test_lock_of_a_live_process_blocks(
    memory_repo: Repository, sleeper: subprocess.Popen[bytes]
) -> None:
    _plant(memory_repo, exclusive=True, pid=sleeper.pid, process_start=0)  # 0: start unknown
    with pytest.raises(RepositoryLocked):
        acquire(memory_repo, exclusive=False)


def test_lock_of_a_dead_process_is_stale(memory_repo: Repository) -> None:
    _plant(memory_repo, exclusive=True, pid=_dead_pid())
    assert all(lock.stale() for lock in list_locks(memory_repo))
    with acquire(memory_repo, exclusive=True):
        pass
    assert [lock.pid for lock in remove_locks(memory_repo)] != []
    assert list_locks(memory_repo) == []


def test_reused_pid_is_stale(memory_repo: Repository, sleeper: subprocess.Popen[bytes]) -> None:
    """Same PID, other start time: the process that took the lock is gone."""
    _plant(memory_repo, exclusive=True, pid=sleeper.pid, process_start=1)
    acquire(memory_repo, exclusive=True).release()


def test_old_lock_from_another_host_is_stale(memory_repo: Repository) -> None:
    old = format_time(datetime.now(UTC) - timedelta(minutes=31))
    _plant(memory_repo, exclusive=True, hostname="elsewhere", time=old)
    fresh = format_time(datetime.now(UTC) - timedelta(minutes=29))
    _plant(memory_repo, exclusive=True, hostname="elsewhere", time=fresh, pid=1)
    with pytest.raises(RepositoryLocked, match="on elsewhere"):
        acquire(memory_repo, exclusive=False)
    removed = remove_locks(memory_repo)
    assert [lock.time for lock in removed] == [old]
    assert len(remove_locks(memory_repo, remove_all=True)) == 1


def test_damaged_lock_is_ignored(memory_repo: Repository) -> None:
    memory_repo.store.put("locks/" + "0" * 64, b"garbage")
    acquire(memory_repo, exclusive=True).release()


def test_refresh_rewrites_the_lock(memory_repo: Repository) -> None:
    lock = acquire(memory_repo, exclusive=False, refresh=0.05)
    first = lock.lock_id
    deadline = time.monotonic() + 5
    while lock.lock_id == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.lock_id != first
    lock.ensure_held()
    lock.release()
    assert list_locks(memory_repo) == []


def test_lock_removed_by_someone_else_is_lost(memory_repo: Repository) -> None:
    with acquire(memory_repo, exclusive=False) as lock:
        remove_locks(memory_repo, remove_all=True)
        with pytest.raises(LockLost, match="removed"):
            lock.ensure_held()


def test_lock_not_refreshed_in_time_is_lost(memory_repo: Repository) -> None:
    lock = RepoLock(memory_repo, exclusive=False, refresh=3600, stale_after=0.05)
    lock.try_take()
    time.sleep(0.1)
    with pytest.raises(LockLost, match="not refreshed"):
        lock.ensure_held()
    lock.release()


def test_retry_waits_for_the_holder(memory_repo: Repository) -> None:
    holder = acquire(memory_repo, exclusive=True)
    threading.Timer(0.3, holder.release).start()
    started = time.monotonic()
    acquire(memory_repo, exclusive=False, retry_for=10).release()
    assert 0.25 < time.monotonic() - started < 5


def _contend(repo: Repository, barrier: threading.Barrier, winners: list[RepoLock]) -> None:
    barrier.wait()
    with contextlib.suppress(RepositoryLocked):
        winners.append(acquire(repo, exclusive=True))


def test_racing_exclusive_lockers_never_both_win(memory_repo: Repository) -> None:
    for _ in range(20):
        barrier = threading.Barrier(2)
        winners: list[RepoLock] = []
        threads = [
            threading.Thread(target=_contend, args=(memory_repo, barrier, winners))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) <= 1
        for lock in winners:
            lock.release()
        assert list_locks(memory_repo) == []
