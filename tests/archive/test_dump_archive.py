"""A subtree as a tar or zip stream: what each format keeps, written to a pipe-like sink."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from safehold.archive.dump_archive import dump_archive
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from tests.archive.helpers import backup, write


class PipeSink(io.RawIOBase):
    """Write-only and unseekable, like standard output into a pipe."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write(src / "old.txt", b"from 1970")
    os.utime(src / "old.txt", ns=(86_400_123_456_789, 86_400_123_456_789))
    write(src / "big.bin", os.urandom(3 << 20))  # several blobs
    os.link(src / "big.bin", src / "again.bin")
    os.mkfifo(src / "pipe")
    if os.geteuid() == 0:
        os.mknod(src / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return src


def test_tar_keeps_ns_mtimes_links_and_special_files(
    local_repo: Repository, tmp_path: Path
) -> None:
    src = tree(tmp_path)
    snapshot = backup(local_repo, src).snapshot
    sink = PipeSink()
    stats = dump_archive(local_repo, snapshot, str(src), sink)  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(bytes(sink.data))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        base = str(src).lstrip("/")
        old = members[f"{base}/old.txt"]
        assert old.pax_headers["mtime"] == "86400.123456789"
        first, second = sorted(["again.bin", "big.bin"])
        assert members[f"{base}/{first}"].isfile()
        assert members[f"{base}/{second}"].islnk()
        assert members[f"{base}/{second}"].linkname == f"{base}/{first}"
        assert tar.extractfile(f"{base}/{first}").read() == (src / first).read_bytes()  # type: ignore[union-attr]
        assert members[f"{base}/pipe"].isfifo()
        if os.geteuid() == 0:
            null = members[f"{base}/null"]
            assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    assert stats.files == 2 and stats.bytes == (3 << 20) + 9  # a hard link carries no bytes


def test_zip_clamps_times_and_leaves_out_what_it_cannot_hold(
    local_repo: Repository, tmp_path: Path
) -> None:
    src = tree(tmp_path)
    snapshot = backup(local_repo, src).snapshot
    sink = PipeSink()
    dump_archive(local_repo, snapshot, str(src), sink, "zip")  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as archive:
        base = str(src).lstrip("/")
        names = set(archive.namelist())
        assert names == {f"{base}/", f"{base}/old.txt", f"{base}/big.bin", f"{base}/again.bin"}
        assert archive.getinfo(f"{base}/old.txt").date_time == (1980, 1, 1, 0, 0, 0)
        assert archive.read(f"{base}/again.bin") == (src / "big.bin").read_bytes()


def test_unknown_format_is_refused(local_repo: Repository, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"x")
    snapshot = backup(local_repo, tmp_path / "src").snapshot
    with pytest.raises(InvalidArgument, match="--archive must be one of tar, zip"):
        dump_archive(local_repo, snapshot, "/", PipeSink(), "rar")  # type: ignore[arg-type]
