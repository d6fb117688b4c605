"""Tree objects: one JSON document per directory, listing its entries sorted by name.

Names and symlink targets are bytes on POSIX; they are stored as text when they are valid
UTF-8 and as base64 (``name_b64``, ``target_b64``) when not, so every name round-trips.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from safehold.errors import CorruptObject, InvalidPath

__all__ = ["Node", "decode_tree", "encode_tree", "safe_name"]

NODE_TYPES = ("file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket")


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
        return base64.b64decode(doc[f"{key}_b64"])
    return str(doc.get(key, "")).encode("utf-8", "surrogateescape")


def _node_doc(node: Node) -> dict[str, Any]:
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
    nodes = sorted(nodes, key=lambda n: n.name)
    return json.dumps({"nodes": [_node_doc(n) for n in nodes]}, separators=(",", ":")).encode()


def decode_tree(doc: dict[str, Any], what: str) -> list[Node]:
    try:
        nodes = [_decode_node(d) for d in doc["nodes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObject(what, f"malformed tree ({exc})") from None
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise InvalidPath(f"{what}: duplicate names in one directory")
    return nodes


def _decode_node(d: dict[str, Any]) -> Node:
    node_type = d["type"]
    if node_type not in NODE_TYPES:
        raise ValueError(f"unknown node type {node_type!r}")
    return Node(
        name=_get_bytes(d, "name"),
        type=node_type,
        mode=int(d.get("mode", 0)),
        uid=int(d.get("uid", 0)),
        gid=int(d.get("gid", 0)),
        user=str(d.get("user", "")),
        group=str(d.get("group", "")),
        mtime_ns=int(d.get("mtime_ns", 0)),
        ctime_ns=int(d.get("ctime_ns", 0)),
        inode=int(d.get("inode", 0)),
        device=int(d.get("device", 0)),
        links=int(d.get("links", 1)),
        size=int(d.get("size", 0)),
        content=[bytes.fromhex(c) for c in d.get("content", [])],
        subtree=d.get("subtree"),
        target=_get_bytes(d, "target") if node_type == "symlink" else b"",
        rdev=int(d.get("rdev", 0)),
        xattrs={k: base64.b64decode(v) for k, v in d.get("xattrs", {}).items()},
    )


def safe_name(name: bytes) -> bytes:
    """A name that is one path component, or ``InvalidPath``: restore must not escape."""
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        raise InvalidPath(name.decode("utf-8", "backslashreplace"))
    return name
