"""The mount's file system operations, called directly (no kernel needed): the layout of
snapshots/, hosts/, tags/, ids/ and reads at any offset across blob boundaries.
tests/e2e/test_mount_cli.py mounts it for real."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from safehold.archive.mount import SnapshotFS
from safehold.archive.snapshotter import BackupRequest, run_backup
from safehold.repo.repository import Repository
from tests.archive.helpers import write


def test_layout_and_reads(local_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    content = os.urandom(3 << 20)  # several blobs
    write(src / "big.bin", content)
    os.symlink("big.bin", src / "link")
    for host, tags, when in [
        ("h1", ["daily"], "2024-01-01T00:00:00Z"),
        ("h1", [], "2024-01-01T00:00:00.5Z"),  # the same second: named with -1
        ("h2", ["daily", "x"], "2024-02-01T00:00:00Z"),
    ]:
        request = BackupRequest(paths=[str(src)], tags=tags, hostname=host, time=when)
        run_backup(local_repo, request)
    ready: list[bool] = []
    fs = SnapshotFS(local_repo, local_repo.list_snapshots(), lambda: ready.append(True))
    fs.init("/")
    assert ready == [True] and fs.mounted

    names = fs.readdir("/snapshots", 0)[2:]
    assert names == [
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:00:00+00:00-1",
        "2024-02-01T00:00:00+00:00",
        "latest",
    ]
    assert fs.readlink("/snapshots/latest") == "2024-02-01T00:00:00+00:00"
    assert fs.readdir("/hosts", 0)[2:] == ["h1", "h2"]
    assert fs.readlink("/hosts/h1/latest") == "2024-01-01T00:00:00+00:00-1"
    assert fs.readdir("/tags", 0)[2:] == ["daily", "x"]
    assert len(fs.readdir("/ids", 0)) == 2 + 3

    newest = "/snapshots/" + fs.readlink("/snapshots/latest")  # the kernel follows links
    file = newest + str(src / "big.bin")
    attrs = fs.getattr(file)
    assert stat.S_ISREG(attrs["st_mode"]) and attrs["st_size"] == len(content)
    assert attrs["st_mtime"] == (src / "big.bin").stat().st_mtime_ns
    assert fs.readlink(newest + str(src / "link")) == "big.bin"
    fh = fs.open(file, os.O_RDONLY)
    for offset, size in [(0, 4096), (524_000, 200_000), (len(content) - 10, 4096), (1 << 30, 10)]:
        assert fs.read(file, size, offset, fh) == content[offset : offset + size]
    fs.release(file, fh)

    for path, code in [
        ("/nope", errno.ENOENT),
        (newest + str(src / "x"), errno.ENOENT),
        (file + "/x", errno.ENOTDIR),
    ]:
        with pytest.raises(OSError) as missing:
            fs.getattr(path)
        assert missing.value.errno == code
    with pytest.raises(OSError) as refused:
        fs.open(file, os.O_WRONLY)
    assert refused.value.errno == errno.EROFS
