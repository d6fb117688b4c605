"""Live mode (a database's data directory in its backup mode) stores each file as read to
its end, whatever size the lstat before said: /proc files say 0 bytes and hold more, as a
file that grows while it is read does."""

from __future__ import annotations

import os
from pathlib import Path

from safehold.archive.backup import Archiver
from safehold.archive.excludes import Excluder
from safehold.repo.repository import Repository
from safehold.storage import LocalStore
from tests.archive.helpers import inside, restore
from tests.conftest import CHEAP_KDF, PASSWORD

CHUNK_MAX = 1024  # the smallest a repository allows: /proc/cpuinfo holds more


def test_live_mode_stores_files_to_their_end_past_the_size_seen(tmp_path: Path) -> None:
    repo = Repository.init(
        LocalStore(tmp_path / "repo"),
        PASSWORD,
        CHEAP_KDF,
        chunk_min=256,
        chunk_avg=512,
        chunk_max=CHUNK_MAX,
    )
    grown = Path("/proc/cpuinfo")  # lstat: 0 bytes; read: more than one chunk's maximum
    small = Path("/proc/sys/kernel/ostype")  # lstat: 0 bytes; read: a few
    expected = {path: path.read_bytes() for path in (grown, small)}
    assert len(expected[grown]) > CHUNK_MAX and 0 < len(expected[small]) < CHUNK_MAX
    with repo.writer() as writer:
        archiver = Archiver(repo, writer, Excluder([]), live=True)
        tree = archiver.backup_paths([os.fsencode(p) for p in expected], None)
    assert archiver.stats.errors == []
    restore(repo, tree, tmp_path / "target")
    for path, content in expected.items():
        assert inside(tmp_path / "target", path).read_bytes() == content
