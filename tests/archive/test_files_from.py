"""restic's three path-list forms for ``backup --files-from``."""

from __future__ import annotations

from pathlib import Path

import pytest

from safehold.archive.files_from import read_files_from
from safehold.errors import InvalidArgument


def test_files_from_trims_skips_comments_and_expands_globs(tmp_path: Path) -> None:
    for name in ("b.log", "a.log", "c.txt"):
        (tmp_path / name).write_text("x")
    listing = tmp_path / "list"
    listing.write_bytes(
        f"# backups\n\n  {tmp_path}/*.log \r\n{tmp_path}/none-*\n{tmp_path}/c.txt\n".encode()
    )
    assert read_files_from(str(listing), "files_from") == [
        f"{tmp_path}/a.log",
        f"{tmp_path}/b.log",
        f"{tmp_path}/none-*",  # matches nothing: kept, so the backup names it as missing
        f"{tmp_path}/c.txt",
    ]


def test_verbatim_and_raw_keep_every_byte(tmp_path: Path) -> None:
    verbatim = tmp_path / "v"
    verbatim.write_bytes(b"  spaced \n#not a comment\r\n\n/odd-\xff\n")
    assert read_files_from(str(verbatim), "verbatim") == [
        "  spaced ",
        "#not a comment",
        "/odd-\udcff",  # not UTF-8: kept as the same bytes (surrogate escapes)
    ]
    raw = tmp_path / "r"
    raw.write_bytes(b"/a\nb\0\0/c d\0")
    assert read_files_from(str(raw), "raw") == ["/a\nb", "/c d"]


def test_unreadable_list_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=f"cannot read {tmp_path}/missing"):
        read_files_from(str(tmp_path / "missing"), "raw")
