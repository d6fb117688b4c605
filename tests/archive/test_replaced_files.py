"""A file replaced between the scan and the read: an editor saving by rename, or a FIFO.

The window between ``lstat`` and ``open`` is microseconds wide and cannot be hit on
purpose, so ``_open_for_reading`` is wrapped to swap the file at that moment: the
one fault faked here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from safehold.archive import backup as backup_module
from safehold.repo.repository import Repository
from tests.archive.helpers import backup, inside, restore, write


def _swap_once(monkeypatch: pytest.MonkeyPatch, path: Path, swap: Callable[[], None]) -> None:
    real_open = backup_module._open_for_reading
    done: list[bool] = []

    def open_after_swap(p: bytes) -> int:
        if p == os.fsencode(path) and not done:
            done.append(True)
            swap()
        return real_open(p)

    monkeypatch.setattr(backup_module, "_open_for_reading", open_after_swap)


def test_a_file_saved_by_rename_during_the_backup_is_stored_new(
    local_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    path = src / "notes.txt"
    write(path, b"old text\n")

    def save_by_rename() -> None:
        write(src / ".notes.txt.swp", b"new text, longer\n")
        os.replace(src / ".notes.txt.swp", path)

    _swap_once(monkeypatch, path, save_by_rename)
    result = backup(local_repo, src)
    assert result.stats.errors == []
    restore(local_repo, result.snapshot.tree, tmp_path / "target")
    assert (inside(tmp_path / "target", src) / "notes.txt").read_bytes() == b"new text, longer\n"


def test_a_file_swapped_for_a_fifo_is_reported_not_waited_for(
    local_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    path = src / "data.bin"
    write(path, b"x" * 100)
    write(src / "other.txt", b"kept\n")

    def swap_for_fifo() -> None:
        path.unlink()
        os.mkfifo(path)

    _swap_once(monkeypatch, path, swap_for_fifo)
    result = backup(local_repo, src)  # with no writer on the FIFO, a blocking open would hang
    assert [p for p, _ in result.stats.errors] == [str(path)]
    restore(local_repo, result.snapshot.tree, tmp_path / "target")
    assert (inside(tmp_path / "target", src) / "other.txt").read_bytes() == b"kept\n"
