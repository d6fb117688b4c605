"""Snapshots: one sealed JSON document per backup, naming the root tree and the sources."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from safehold.errors import CorruptObject, InvalidArgument, SnapshotNotFound
from safehold.repo.index import hex_id

__all__ = ["Snapshot", "find_snapshot", "format_time", "parse_time", "snapshot_doc"]


@dataclass
class Snapshot:
    time: str
    tree: str
    paths: list[str]
    hostname: str
    username: str = ""
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    program_version: str = ""
    summary: dict[str, int | float] = field(default_factory=dict)
    # What kind of data this is and its recovery point, for snapshots made by a source
    # other than plain files: {"kind": "postgres", "system_id": ..., "stop_lsn": ...}.
    source: dict[str, Any] = field(default_factory=dict)
    original: str | None = None  # set by `repair snapshots`: the snapshot this one repairs
    id: str = field(default="", compare=False)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def datetime(self) -> datetime:
        return parse_time(self.time)

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        del doc["id"]
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, snapshot_id: str) -> Snapshot:
        """A snapshot document, every field checked for its type (FORMAT.md §8): one that
        another host wrote can hold anything, and must fail here, in one line, not later
        in whatever command uses it."""
        what = f"snapshots/{snapshot_id}"
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise CorruptObject(what, f"not a snapshot ({exc})") from None
        if not isinstance(doc, dict):
            raise CorruptObject(what, "not a snapshot (not a JSON object)")
        known = {f.name for f in fields(cls)} - {"id"}
        values = {k: v for k, v in doc.items() if k in known}
        for name, check in _FIELD_CHECKS.items():
            if (name in values or name in _REQUIRED) and not check(values.get(name)):
                shown = json.dumps(values.get(name))[:60]
                raise CorruptObject(what, f"not a snapshot (field {name!r} is {shown})")
        try:
            parse_time(values["time"])
        except InvalidArgument as exc:
            raise CorruptObject(what, f"not a snapshot ({exc})") from None
        hex_id(values["tree"], what, "tree")
        return cls(**values, id=snapshot_id)

    def matches(self, hosts: Iterable[str], tags: Iterable[str], paths: Iterable[str]) -> bool:
        """restic's filter: every given host/tag/path list must be met (any of its values)."""
        hosts, tags, paths = list(hosts), list(tags), list(paths)
        if hosts and self.hostname not in hosts:
            return False
        if tags and not any(set(t.split(",")) <= set(self.tags) for t in tags):
            return False
        return not paths or set(paths) <= set(self.paths)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _text_or_null(value: object) -> bool:
    return value is None or isinstance(value, str)


_REQUIRED = ("time", "tree", "paths", "hostname")
_FIELD_CHECKS: dict[str, Callable[[object], bool]] = {
    "time": lambda v: isinstance(v, str),
    "tree": lambda v: isinstance(v, str),
    "paths": _strings,
    "hostname": lambda v: isinstance(v, str),
    "username": lambda v: isinstance(v, str),
    "tags": _strings,
    "parent": _text_or_null,
    "program_version": lambda v: isinstance(v, str),
    "summary": lambda v: (
        isinstance(v, dict)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v.values())
    ),
    "source": lambda v: isinstance(v, dict),
    "original": _text_or_null,
}


def snapshot_doc(s: Snapshot) -> dict[str, object]:
    """A snapshot as `snapshots --json` prints it."""
    return {
        "id": s.id,
        "short_id": s.short_id,
        "time": s.time,
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths,
        "tags": s.tags,
        "parent": s.parent,
        "tree": s.tree,
        "program_version": s.program_version,
        "summary": s.summary,
        "source": s.source,
        "original": s.original,
    }


def format_time(moment: datetime) -> str:
    """RFC 3339 with microseconds and an explicit offset."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601; a time without offset is taken as local time."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"invalid time {text!r}: use RFC 3339, e.g. 2026-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def find_snapshot(snapshots: list[Snapshot], ref: str) -> Snapshot:
    """Resolve ``latest``, a full id or a unique id prefix (8 hex is the short id)."""
    if ref == "latest":
        if not snapshots:
            raise SnapshotNotFound(ref)
        return max(snapshots, key=lambda s: (s.datetime, s.id))
    matches = [s for s in snapshots if s.id.startswith(ref.lower())] if ref else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidArgument(f"snapshot id prefix {ref!r} is ambiguous: use more characters")
    raise SnapshotNotFound(ref)


def now() -> str:
    return format_time(datetime.now(UTC).astimezone())
