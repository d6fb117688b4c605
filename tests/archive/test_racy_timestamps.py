"""A file changed within one tick of the file system's clock is still backed up.

ext4 stamps times from a clock that ticks about every 4 ms (FAT every 2 s), so a file
rewritten right after a backup read it can keep its size, mtime and ctime. Such a tick
cannot be caught on purpose in a test, so ``os.lstat`` is patched to report the old
times for that one file: a stand-in for a coarse clock, the one fault faked here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from safehold.archive import backup as backup_module
from safehold.archive.backup import RACY_WINDOW_NS
from safehold.repo.repository import Repository
from tests.archive.helpers import backup, inside, restore, write


def _frozen_times(real: os.stat_result, like: os.stat_result) -> os.stat_result:
    """``real`` with the timestamps of ``like``."""
    names = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
    extra = {n: getattr(real, n) for n in ("st_blksize", "st_blocks", "st_rdev")}
    extra.update({n: getattr(like, n) for n in names})
    fields = [*list(real)[:7], int(like.st_atime), int(like.st_mtime), int(like.st_ctime)]
    return os.stat_result(fields, extra)


def test_a_rewrite_in_the_same_clock_tick_is_not_missed(
    local_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    path = src / "db.conf"
    write(path, b"port = 5432\n")
    first = backup(local_repo, src)
    assert first.stats.files_new == 1
    before = os.lstat(path)
    path.write_bytes(b"port = 6543\n")  # same size; a coarse clock keeps the times
    real_lstat = os.lstat

    def coarse_lstat(p: str | bytes | os.PathLike[str]) -> os.stat_result:
        st = real_lstat(p)
        return _frozen_times(st, before) if os.fsencode(p) == os.fsencode(path) else st

    monkeypatch.setattr(os, "lstat", coarse_lstat)
    second = backup(local_repo, src)
    monkeypatch.undo()
    assert second.stats.files_changed == 1
    restore(local_repo, second.snapshot.tree, tmp_path / "target")
    assert (inside(tmp_path / "target", src) / "db.conf").read_bytes() == b"port = 6543\n"


def test_an_unchanged_file_is_not_read_again(
    local_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the racy window, size, mtime, ctime and inode decide: no content is read."""
    src = tmp_path / "src"
    for i in range(20):
        write(src / f"d{i % 3}" / f"f{i}", os.urandom(5000))
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)  # let the files' ctimes leave the window
    backup(local_repo, src)
    opened: list[bytes] = []
    real_open = backup_module._open_for_reading

    def counting_open(p: bytes) -> int:
        opened.append(p)
        return real_open(p)

    monkeypatch.setattr(backup_module, "_open_for_reading", counting_open)  # a counter only
    second = backup(local_repo, src)
    assert opened == []
    assert second.stats.files_unmodified == 20 and second.data_added < 2048
