#!/usr/bin/env python3
"""Recover a file from a safehold repository without safehold, following docs/FORMAT.md.

Needs only `pip install cryptography argon2-cffi zstandard blake3`. SNAPSHOT is "latest" or an
id prefix; PATH is absolute. A file goes to OUTPUT (default stdout); a directory is listed.
Password: --password-file, else $SAFEHOLD_PASSWORD, else a prompt. --scan-packs reads the pack
headers instead of index/ (for a repository whose index is lost).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
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


def unseal(key: bytes, sealed: bytes) -> bytes:
    """nonce (12) | AES-256-GCM ciphertext | tag (16), no associated data."""
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)


def unpayload(payload: bytes) -> bytes:
    """Flag byte 0: stored as is; 1: one zstd frame."""
    if payload[0] == 0:
        return payload[1:]
    if payload[0] == 1:
        return zstandard.ZstdDecompressor().decompressobj().decompress(payload[1:])
    raise ValueError(f"unknown compression flag {payload[0]}")


def objects(directory: Path, pattern: str = "*") -> list[Path]:
    """The objects in a directory; names starting with "." are unfinished writes (§1)."""
    return sorted(p for p in directory.glob(pattern) if not p.name.startswith("."))


class Repo:
    def __init__(self, root: Path, password: bytes) -> None:
        self.root = root
        self.enc, self.id_key = self._unlock(password)
        self.blobs: dict[bytes, tuple[str, int, int]] = {}  # blob id -> (pack, offset, length)

    def _unlock(self, password: bytes) -> tuple[bytes, bytes]:
        for path in objects(self.root / "keys"):
            doc = json.loads(path.read_bytes())
            k, salt = doc["kdf_params"], base64.b64decode(doc["salt"])
            wrapping = hash_secret_raw(
                password, salt, k["iterations"], k["memory_kib"], k["parallelism"], 32, Type.ID
            )
            try:
                master = json.loads(unseal(wrapping, base64.b64decode(doc["data"])))
            except InvalidTag:
                continue  # another password's key file
            return base64.b64decode(master["encryption"]), base64.b64decode(master["id_key"])
        sys.exit("recover: wrong password (no key file opens with it)")

    def document(self, kind: str, name: str) -> Any:
        """An index or snapshot: named by the BLAKE3 of its bytes, sealed payload of JSON."""
        raw = (self.root / kind / name).read_bytes()
        if blake3.blake3(raw).hexdigest() != name:
            sys.exit(f"recover: {kind}/{name} is damaged (hash mismatch)")
        return json.loads(unpayload(unseal(self.enc, raw)))

    def load_index(self) -> None:
        for path in objects(self.root / "index"):
            for pack in self.document("index", path.name)["packs"]:
                for b in pack["blobs"]:
                    entry = (pack["id"], b["offset"], b["length"])
                    self.blobs.setdefault(bytes.fromhex(b["id"]), entry)

    def scan_packs(self) -> None:
        for path in objects(self.root / "data", "*/*"):
            data = path.read_bytes()
            header_len, version, key_type = struct.unpack("<IBB", data[-6:])
            if (version, key_type) != (1, 0):
                sys.exit(f"recover: {path.name}: unknown pack version/key type")
            header = unseal(self.enc, data[-6 - header_len : -6])
            offset = 0
            for i in range(struct.unpack_from("<I", header)[0]):
                _type, length, _raw, blob_id = struct.unpack_from("<BII32s", header, 4 + 41 * i)
                self.blobs.setdefault(blob_id, (path.name, offset, length))
                offset += length

    def blob(self, blob_id: bytes) -> bytes:
        pack, offset, length = self.blobs[blob_id]
        with open(self.root / "data" / pack[:2] / pack, "rb") as f:
            f.seek(offset)
            data = unpayload(unseal(self.enc, f.read(length)))
        if blake3.blake3(data, key=self.id_key).digest() != blob_id:
            sys.exit(f"recover: blob {blob_id.hex()} is damaged (id mismatch)")
        return data

    def tree(self, tree_id: str) -> list[dict[str, Any]]:
        return json.loads(self.blob(bytes.fromhex(tree_id)))["nodes"]  # type: ignore[no-any-return]


def raw_field(node: dict[str, Any], key: str) -> bytes:
    """Names and symlink targets: text when UTF-8, else ``<key>_b64`` (FORMAT.md §9)."""
    if f"{key}_b64" in node:
        return base64.b64decode(node[f"{key}_b64"])
    return str(node.get(key, "")).encode()


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
        node = found[0]
    if node["type"] == "dir":
        for child in repo.tree(node["subtree"]) if node.get("subtree") else []:
            kind, name = child["type"].encode(), raw_field(child, "name")
            line = b"%-8s %12d %s" % (kind, child.get("size", 0), name)
            if child["type"] == "symlink":
                line += b" -> " + raw_field(child, "target")
            sys.stdout.buffer.write(line + b"\n")
    elif node["type"] == "file":
        out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        for blob_id in node["content"]:
            out.write(repo.blob(bytes.fromhex(blob_id)))
        out.flush()
        if output:
            out.close()
            os.chmod(output, node.get("mode", 0o600) & 0o7777)
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
    repo = Repo(args.repo, password)
    try:
        repo.scan_packs() if args.scan_packs else repo.load_index()
        recover(repo, args.snapshot, args.path, args.output)
    except InvalidTag:
        sys.exit("recover: authentication failed: the repository is damaged")


if __name__ == "__main__":
    main()
