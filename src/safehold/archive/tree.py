"""Tree objects: one JSON document per directory, listing its entries sorted by name.

Names and symlink targets are bytes on POSIX; they are stored as text when they are valid
UTF-8 and as base64 (``name_b64``, ``target_b64``) when not, so every name round-trips.
"""

from __future__ import annotations

import base64
import json
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from safehold.errors import CorruptObject, InvalidPath

__all__ = [
    "NODE_TYPE_OF_MODE",
    "BadEntry",
    "Node",
    "decode_entries",
    "decode_tree",
    "doc_name",
    "encode_docs",
    "encode_tree",
    "iter_entries",
    "node_doc",
    "safe_name",
    "tree_nodes",
    "whole_nodes",
]

NODE_TYPE_OF_MODE = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFSOCK: "socket",
}
NODE_TYPES = frozenset(NODE_TYPE_OF_MODE.values())


@dataclass(slots=True)
class Node:
    name: bytes
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    device: int = 0
    links: int = 1
    size: int = 0
    content: list[bytes] = field(default_factory=list)
    subtree: str | None = None
    target: bytes = b""
    rdev: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.name.decode("utf-8", "backslashreplace")


def _put_bytes(doc: dict[str, Any], key: str, value: bytes) -> None:
    try:
        doc[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        doc[f"{key}_b64"] = base64.b64encode(value).decode()


def _get_bytes(doc: dict[str, Any], key: str) -> bytes:
    if f"{key}_b64" in doc:
        return base64.b64decode(doc[f"{key}_b64"], validate=True)
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    return value.encode("utf-8", "surrogateescape")


def _is_id(value: object) -> bool:
    """A blob or tree id as the format writes it: 64 lowercase hex digits."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


_ID = re.compile("[0-9a-f]{64}")


def node_doc(node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    _put_bytes(doc, "name", node.name)
    doc.update(
        type=node.type,
        mode=node.mode,
        uid=node.uid,
        gid=node.gid,
        user=node.user,
        group=node.group,
        mtime_ns=node.mtime_ns,
        ctime_ns=node.ctime_ns,
        inode=node.inode,
        device=node.device,
        links=node.links,
    )
    if node.type == "file":
        doc["size"] = node.size
        doc["content"] = [c.hex() for c in node.content]
    elif node.type == "dir":
        doc["subtree"] = node.subtree
    elif node.type == "symlink":
        _put_bytes(doc, "target", node.target)
    elif node.type in ("chardev", "blockdev"):
        doc["rdev"] = node.rdev
    if node.xattrs:
        doc["xattrs"] = {k: base64.b64encode(v).decode() for k, v in sorted(node.xattrs.items())}
    return doc


def encode_tree(nodes: list[Node]) -> bytes:
    """The canonical bytes of a directory: same entries, same bytes, same blob id."""
    return encode_docs([node_doc(n) for n in sorted(nodes, key=lambda n: n.name)])


def encode_docs(docs: list[dict[str, Any]]) -> bytes:
    """A tree from node documents already sorted by name (the backup's fast path)."""
    return json.dumps({"nodes": docs}, separators=(",", ":")).encode()


def doc_name(doc: dict[str, Any]) -> bytes:
    return _get_bytes(doc, "name")


@dataclass(frozen=True, slots=True)
class BadEntry:
    """An entry of a tree document that cannot be used: malformed, or a repeated name."""

    name: bytes
    reason: str


def decode_entries(doc: dict[str, Any], what: str) -> tuple[list[Node], list[BadEntry]]:
    """Every usable node of a decoded tree, and apart each malformed entry and each
    repeated name (the first entry of a name wins)."""
    docs = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(docs, list):
        raise CorruptObject(what, "malformed tree (no list of nodes)")
    nodes: list[Node] = []
    bad: list[BadEntry] = []
    for item in _checked(iter(docs)):
        if isinstance(item, BadEntry):
            bad.append(item)
        else:
            nodes.append(item)
    return nodes, bad


def iter_entries(text: str, what: str) -> Iterator[Node | BadEntry]:
    """The entries of a tree document, one at a time, each usable node or a ``BadEntry``
    (malformed, a repeated name, or the rest of a document that stops parsing).

    Streaming: a tree of two million entries costs its text, never two million objects.
    ``CorruptObject`` only before the first entry, when the text is no tree at all.
    """
    return _checked(_node_docs(text, what))


def tree_nodes(text: str, what: str) -> list[Node]:
    """The nodes of a tree that must be whole (ls, find, diff): any bad entry refuses it."""
    return whole_nodes(iter_entries(text, what), what)


def whole_nodes(entries: Iterable[Node | BadEntry], what: str) -> list[Node]:
    """The nodes of a tree's parsed entries, refused at its first bad entry."""
    nodes = []
    for item in entries:
        if isinstance(item, BadEntry):
            _refuse([item], what)
        else:
            nodes.append(item)
    return nodes


def decode_tree(doc: dict[str, Any], what: str) -> list[Node]:
    """The nodes of a decoded tree that must be whole: any bad entry refuses it."""
    nodes, bad = decode_entries(doc, what)
    _refuse(bad[:1], what)
    return nodes


def _refuse(bad: list[BadEntry], what: str) -> None:
    for entry in bad:
        if entry.reason.startswith("duplicate"):
            shown = entry.name.decode("utf-8", "backslashreplace")
            raise CorruptObject(what, f"the name {shown!r} appears twice in one directory")
        raise CorruptObject(what, entry.reason.replace("malformed entry", "malformed tree"))


class _Stop(NamedTuple):
    """The rest of a tree document could not be parsed."""

    reason: str


def _checked(docs: Iterator[Any]) -> Iterator[Node | BadEntry]:
    seen: set[bytes] = set()
    for d in docs:
        if isinstance(d, _Stop):
            yield BadEntry(b"", d.reason)
            return
        name = _best_name(d)
        if name in seen:  # before decoding: a tree may repeat one entry millions of times
            yield BadEntry(name, "duplicate name in one directory")
            continue
        try:
            node = _decode_node(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield BadEntry(name, f"malformed entry ({exc})")
            continue
        seen.add(node.name)
        yield node


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_CANONICAL_START = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"nodes"[ \t\n\r]*:[ \t\n\r]*\[')


def _node_docs(text: str, what: str) -> Iterator[Any]:
    """The node documents of ``{"nodes": [...]}``, parsed one by one; a document of
    another shape (fields before "nodes") is parsed whole."""
    start = _CANONICAL_START.match(text)
    if start is None:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CorruptObject(what, f"not a tree document ({exc})") from None
        docs = doc.get("nodes") if isinstance(doc, dict) else None
        if not isinstance(docs, list):
            raise CorruptObject(what, "malformed tree (no list of nodes)")
        return iter(docs)
    return _stream(text, start.end())


def _stream(text: str, pos: int) -> Iterator[Any]:
    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, pos = _DECODER.raw_decode(text, pos)
            except ValueError as exc:
                yield _Stop(f"malformed tree, entries from here on lost ({exc})")
                return
            yield value
            pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                yield _Stop(f"malformed tree, entries from here on lost (at byte {pos})")
                return
    rest = text[pos:].strip()
    if rest != "}":  # other fields after the list: ignored, but the whole must be JSON
        try:
            json.loads("{" + rest[1:] if rest.startswith(",") else "!")
        except ValueError:
            yield _Stop("malformed tree (text after the list of nodes)")


def _best_name(d: object) -> bytes:
    try:
        return _get_bytes(d, "name") if isinstance(d, dict) else b""
    except (TypeError, ValueError):
        return b""


def _int(d: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An integer field within the range the system calls accept (so restore cannot crash)."""
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} is not an integer")
    if not low <= value <= high:
        raise ValueError(f"{key} {value} out of range")
    return value


_U32, _U64, _I64 = 2**32 - 1, 2**64 - 1, 2**63 - 1


def _decode_node(d: dict[str, Any]) -> Node:
    node_type = d["type"]
    if node_type not in NODE_TYPES:
        raise ValueError(f"unknown node type {node_type!r}")
    subtree = d.get("subtree")
    if subtree is not None and not _is_id(subtree):
        raise ValueError("subtree is not a tree id")
    xattrs = d.get("xattrs", {})
    if not isinstance(xattrs, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in xattrs.items()
    ):
        raise ValueError("malformed xattrs")
    content = d.get("content", [])
    if not isinstance(content, list) or not all(_is_id(c) for c in content):
        raise ValueError("content is not a list of blob ids")
    user, group = d.get("user", ""), d.get("group", "")
    if not isinstance(user, str) or not isinstance(group, str):
        raise ValueError("user or group is not text")
    return Node(
        name=_get_bytes(d, "name"),
        type=node_type,
        mode=_int(d, "mode", 0, 0, 0o7777),
        uid=_int(d, "uid", 0, 0, _U32),
        gid=_int(d, "gid", 0, 0, _U32),
        user=user,
        group=group,
        mtime_ns=_int(d, "mtime_ns", 0, -_I64 - 1, _I64),
        ctime_ns=_int(d, "ctime_ns", 0, -_I64 - 1, _I64),
        inode=_int(d, "inode", 0, 0, _U64),
        device=_int(d, "device", 0, 0, _U64),
        links=_int(d, "links", 1, 0, _U64),
        size=_int(d, "size", 0, 0, _I64),
        content=[bytes.fromhex(c) for c in content],
        subtree=subtree,
        target=_get_bytes(d, "target") if node_type == "symlink" else b"",
        rdev=_int(d, "rdev", 0, 0, _U64),
        xattrs={k: base64.b64decode(v, validate=True) for k, v in xattrs.items()},
    )


def safe_name(name: bytes) -> bytes:
    """A name that is one path component, or ``InvalidPath``: restore must not escape."""
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        raise InvalidPath(name.decode("utf-8", "backslashreplace"))
    return name
