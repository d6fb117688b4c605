"""WAL file names, LSNs and the cluster's system identifier.

A segment is named ``TTTTTTTTXXXXXXXXYYYYYYYY``: timeline, then the segment number split
in two (``segno // per_id``, ``segno % per_id`` with ``per_id = 2**32 // segment size``).
History files are ``TTTTTTTT.history``; ``.partial`` and ``.backup`` files carry a segment
name before their suffix.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from safehold.errors import InvalidArgument

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "WalName",
    "format_lsn",
    "parse_lsn",
    "parse_wal_name",
    "read_system_id",
    "segment_name",
]

DEFAULT_SEGMENT_SIZE = 16 << 20
_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial|\.[0-9A-F]{8}\.backup)?$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")


@dataclass(frozen=True)
class WalName:
    """A parsed archive file name; ``kind`` is segment, partial, backup or history."""

    name: str
    kind: str
    timeline: int
    log: int = 0
    seg: int = 0

    def segno(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        return self.log * (0x100000000 // segment_size) + self.seg


def parse_wal_name(name: str) -> WalName | None:
    """The parts of a WAL archive file name, or None if it is not one."""
    m = _HISTORY.match(name)
    if m:
        return WalName(name, "history", int(m.group(1), 16))
    m = _NAME.match(name)
    if not m:
        return None
    suffix = m.group(4) or ""
    kind = "segment" if not suffix else ("partial" if suffix == ".partial" else "backup")
    return WalName(name, kind, int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16))


def segment_name(timeline: int, segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def parse_lsn(text: str) -> int:
    """``16/B374D848`` → an integer."""
    try:
        high, low = text.split("/")
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise InvalidArgument(f"invalid LSN {text!r}: expected e.g. 0/3000060") from None


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def read_system_id(pgdata: str) -> str:
    """The database system identifier: the first 8 bytes (LE) of global/pg_control."""
    path = os.path.join(pgdata, "global", "pg_control")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    if len(head) != 8:
        raise InvalidArgument(f"{path} is truncated")
    return str(struct.unpack("<Q", head)[0])
