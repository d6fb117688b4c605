#!/usr/bin/env python3
"""Recover a file from a safehold repository without safehold, following docs/FORMAT.md.

Needs only `pip install cryptography argon2-cffi zstandard blake3`. SNAPSHOT is "latest" or an
id prefix; PATH is absolute. A file goes to OUTPUT (default stdout); a directory is listed.
Password: --password-file, else $SAFEHOLD_PASSWORD, else a prompt. --scan-packs reads the pack
headers instead of index/ (for a repository whose index is lost). The repository is untrusted
input (FORMAT.md §16): ids are checked before they name a file, only regular files are read,
sizes are checked before decompressing, and damage ends the run in one line.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import re
import stat
import struct
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import blake3
import zstandard
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_DOCUMENT = 512 << 20  # FORMAT.md §16: what a reader accepts
MAX_TREE = 256 << 20
ID = re.compile(r"[0-9a-f]{64}")


class Damage(Exception):
    """The repository is not as FORMAT.md says: named in one line, never a traceback."""


def checked_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise Damage(f"{what} {str(value)[:80]!r} is not 64 lowercase hex digits")
    return value


def read(path: Path, offset: int = 0, length: int | None = None) -> bytes:
    """A byte range of a regular file: no symlink, FIFO or device is followed or waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        length = st.st_size - offset if length is None else length
        if not stat.S_ISREG(st.st_mode) or offset + length > st.st_size:
            raise Damage(f"{path} is not a regular file of the size the index says")
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def unseal(key: bytes, sealed: bytes) -> bytes:
    """nonce (12) | AES-256-GCM ciphertext | tag (16), no associated data."""
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)


def unpayload(payload: bytes, raw_length: int | None, limit: int) -> bytes:
    """Flag byte 0: stored as is; 1: one zstd frame, its size checked before decompressing."""
    bound = limit if raw_length is None else min(raw_length, limit)
    if payload[:1] == b"\0":
        data = payload[1:]
    elif payload[:1] == b"\1":
        declared = zstandard.frame_content_size(payload[1:])
        if declared > bound:
            raise Damage(f"a zstd frame declares {declared} bytes, at most {bound} expected")
        data = zstandard.ZstdDecompressor().stream_reader(payload[1:]).read(bound + 1)
    else:
        raise Damage(f"unknown compression flag {payload[:1]!r}")
    if len(data) > bound or (raw_length is not None and len(data) != raw_length):
        raise Damage(f"{len(data)} bytes where {raw_length or bound} were expected")
    return data


def objects(directory: Path, pattern: str = "*") -> list[Path]:
    """The objects in a directory; names starting with "." are unfinished writes (§1)."""
    return sorted(p for p in directory.glob(pattern) if not p.name.startswith("."))


class Repo:
    def __init__(self, root: Path, password: bytes) -> None:
        self.root = root
        self.enc, self.id_key = self._unlock(password)
        self.blobs: dict[bytes, tuple[str, int, int, int]] = {}  # id -> pack, offset, length, raw

    def _unlock(self, password: bytes) -> tuple[bytes, bytes]:
        for path in objects(self.root / "keys"):  # every key file, until one opens
            try:
                doc = json.loads(read(path))
                k, salt = doc["kdf_params"], base64.b64decode(doc["salt"])
                wrapping = hash_secret_raw(
                    password, salt, k["iterations"], k["memory_kib"], k["parallelism"], 32, Type.ID
                )
                master = json.loads(unseal(wrapping, base64.b64decode(doc["data"])))
                return base64.b64decode(master["encryption"]), base64.b64decode(master["id_key"])
            except Exception:  # another password's key file, or a damaged one
                continue
        sys.exit("recover: wrong password (no key file opens with it)")

    def document(self, kind: str, name: str) -> Any:
        """An index or snapshot: named by the BLAKE3 of its bytes, sealed payload of JSON."""
        raw = read(self.root / kind / checked_id(name, kind))
        if blake3.blake3(raw).hexdigest() != name:
            raise Damage(f"{kind}/{name} is damaged (hash mismatch)")
        return json.loads(unpayload(unseal(self.enc, raw), None, MAX_DOCUMENT))

    def load_index(self) -> None:
        for path in objects(self.root / "index"):
            for pack in self.document("index", path.name)["packs"]:
                pack_id = checked_id(pack["id"], "pack id")
                for b in pack["blobs"]:
                    where = (pack_id, int(b["offset"]), int(b["length"]), int(b["raw_length"]))
                    self.blobs.setdefault(bytes.fromhex(checked_id(b["id"], "blob id")), where)

    def scan_packs(self) -> None:
        for path in objects(self.root / "data", "*/*"):
            data = read(path)
            header_len, version, key_type = struct.unpack("<IBB", data[-6:])
            if (version, key_type) != (1, 0):
                raise Damage(f"{path.name}: unknown pack version/key type")
            header = unseal(self.enc, data[-6 - header_len : -6])
            offset = 0
            for i in range(struct.unpack_from("<I", header)[0]):
                _type, length, raw, blob_id = struct.unpack_from("<BII32s", header, 4 + 41 * i)
                self.blobs.setdefault(blob_id, (checked_id(path.name, "pack"), offset, length, raw))
                offset += length

    def blob(self, blob_id: bytes, limit: int) -> bytes:
        if blob_id not in self.blobs:
            raise Damage(f"blob {blob_id.hex()} is not in the index")
        pack, offset, length, raw = self.blobs[blob_id]
        data = read(self.root / "data" / pack[:2] / pack, offset, length)
        data = unpayload(unseal(self.enc, data), raw, limit)
        if blake3.blake3(data, key=self.id_key).digest() != blob_id:
            raise Damage(f"blob {blob_id.hex()} is damaged (id mismatch)")
        return data

    def tree(self, tree_id: Any) -> list[dict[str, Any]]:
        return json.loads(self.blob(bytes.fromhex(checked_id(tree_id, "tree")), MAX_TREE))["nodes"]  # type: ignore[no-any-return]


def raw_field(node: dict[str, Any], key: str) -> bytes:
    """Names and symlink targets: text when UTF-8, else ``<key>_b64`` (FORMAT.md §9)."""
    if f"{key}_b64" in node:
        return base64.b64decode(node[f"{key}_b64"], validate=True)
    return str(node.get(key, "")).encode("utf-8", "surrogateescape")


def pick_snapshot(repo: Repo, ref: str) -> dict[str, Any]:
    names = [p.name for p in objects(repo.root / "snapshots")]
    if ref != "latest":
        names = [n for n in names if n.startswith(ref.lower())]
        if len(names) != 1:
            sys.exit(f"recover: {len(names)} snapshots match {ref!r}")
    if not names:
        sys.exit("recover: the repository has no snapshots")
    snaps: dict[str, dict[str, Any]] = {n: repo.document("snapshots", n) for n in names}
    when = {n: datetime.fromisoformat(s["time"].replace("Z", "+00:00")) for n, s in snaps.items()}
    return snaps[max(names, key=lambda n: (when[n], n))]  # the latest; ties: the greater id


def recover(repo: Repo, snapshot: str, path: str, output: str | None) -> None:
    node: dict[str, Any] = {"type": "dir", "subtree": pick_snapshot(repo, snapshot)["tree"]}
    for part in [p for p in os.fsencode(path).split(b"/") if p]:
        if node["type"] != "dir":
            sys.exit(f"recover: {path}: not a directory on the way")
        found = [n for n in repo.tree(node["subtree"]) if raw_field(n, "name") == part]
        if not found:
            sys.exit(f"recover: {path}: not in the snapshot")
        node = found[0]  # as safehold: the first entry of a repeated name
    if node["type"] == "dir":
        for child in repo.tree(node["subtree"]) if node.get("subtree") else []:
            kind, name = str(child["type"]).encode(), raw_field(child, "name")
            line = b"%-8s %12d %s" % (kind, int(child.get("size", 0)), name)
            if child["type"] == "symlink":
                line += b" -> " + raw_field(child, "target")
            sys.stdout.buffer.write(line + b"\n")
    elif node["type"] == "file":
        out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        for blob_id in node["content"]:
            out.write(repo.blob(bytes.fromhex(checked_id(blob_id, "blob id")), 1 << 24))
        out.flush()
        if output:  # permission bits only: setuid/setgid without the owner mean nothing
            out.close()
            os.chmod(output, int(node.get("mode", 0o600)) & 0o777)
    else:
        sys.exit(f"recover: {path} is a {node['type']}, not a file or directory")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("repo", type=Path)
    ap.add_argument("snapshot")
    ap.add_argument("path")
    ap.add_argument("-o", "--output", help="where to write a file (default: standard output)")
    ap.add_argument("--password-file")
    ap.add_argument("--scan-packs", action="store_true", help="ignore index/, read pack headers")
    args = ap.parse_args()
    if args.password_file:
        password = Path(args.password_file).read_bytes().rstrip(b"\r\n")
    elif "SAFEHOLD_PASSWORD" in os.environ:
        password = os.environ["SAFEHOLD_PASSWORD"].encode()
    else:
        password = getpass.getpass("Repository password: ").encode()
    try:
        repo = Repo(args.repo, password)
        repo.scan_packs() if args.scan_packs else repo.load_index()
        recover(repo, args.snapshot, args.path, args.output)
    except InvalidTag:
        sys.exit("recover: authentication failed: the repository is damaged")
    except Exception as exc:  # malformed data of any kind: one line, never a traceback
        sys.exit(f"recover: the repository is damaged: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
