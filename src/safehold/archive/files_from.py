"""``backup --files-from``, ``--files-from-verbatim``, ``--files-from-raw``: the paths to
back up, read from a file (restic's three forms; "-" reads standard input).

- ``files_from``: one per line, surrounding blanks trimmed, blank lines and lines starting
  with ``#`` ignored, each line a glob (``*``, ``?``, ``[...]``) expanded; a line matching
  nothing is kept as given, so the backup names it as missing;
- ``verbatim``: one path per line exactly as written (only the line end removed), no
  comments, no globs;
- ``raw``: paths separated by NUL bytes (``find -print0``), exactly as written.

Empty entries are skipped in every form; names need not be UTF-8.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Literal

from safehold.errors import InvalidArgument

__all__ = ["FilesFromMode", "read_files_from"]

FilesFromMode = Literal["files_from", "verbatim", "raw"]


def read_files_from(path: str, mode: FilesFromMode) -> list[str]:
    raw = _read(path)
    if mode == "raw":
        return [os.fsdecode(p) for p in raw.split(b"\0") if p]
    lines = [line.removesuffix(b"\r") for line in raw.split(b"\n")]
    if mode == "verbatim":
        return [os.fsdecode(line) for line in lines if line]
    paths: list[str] = []
    for line in (os.fsdecode(raw_line.strip()) for raw_line in lines):
        if not line or line.startswith("#"):
            continue
        matches = sorted(glob.glob(line)) if any(c in line for c in "*?[") else []
        paths.extend(matches or [line])
    return paths


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
