"""Building hostile repositories, and running safehold on them as an attacker would want.

A repository is untrusted input: whoever can write to the store plants special files,
whoever shares the password writes any snapshot, tree or index. The builders here make
such repositories through the project's own writer (trees, snapshots) and by hand where
the lie is in the bytes (zstd frames, pack trailers, index fields). ``run`` starts the
command in a child process under a timeout and a 1 GiB address-space limit, and fails on
any traceback or internal error: a hostile repository may make a command fail, in one
clear line per problem, never hang or crash.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safehold.archive.tree import Node, encode_tree
from safehold.repo.pack import BlobType, PackWriter
from safehold.repo.repository import Repository, pack_key
from safehold.repo.snapshot import Snapshot
from safehold.storage import LocalStore
from tests.archive.helpers import save_data
from tests.conftest import CHEAP_KDF, PASSWORD, SAFEHOLD

__all__ = [
    "MEMORY_LIMIT",
    "Ran",
    "file_node",
    "hostile_repo",
    "plant_blob",
    "remove_tree",
    "rle_frame",
    "run",
    "save_snapshot",
    "zstd_frame",
]

MEMORY_LIMIT = 1 << 30
CHUNK_MAX = 64 << 10


def hostile_repo(path: Path) -> Repository:
    """An empty repository with small chunks, on a local disk."""
    return Repository.init(
        LocalStore(path),
        PASSWORD,
        CHEAP_KDF,
        chunk_min=4096,
        chunk_avg=8192,
        chunk_max=CHUNK_MAX,
        pack_size=256 * 1024,
    )


def file_node(repo: Repository, name: bytes, data: bytes, **fields: Any) -> Node:
    """A file node whose content is saved through the project's writer."""
    fields.setdefault("size", len(data))
    fields.setdefault("mode", 0o644)
    return Node(name=name, type="file", content=[save_data(repo, data)], **fields)


def save_snapshot(repo: Repository, tree: str, **summary: int) -> Snapshot:
    snapshot = Snapshot(
        time="2026-06-01T00:00:00+00:00",
        tree=tree,
        paths=["/h"],
        hostname="hostile",
        summary=dict(summary),
    )
    repo.save_snapshot(snapshot)
    return snapshot


def plant_blob(
    repo: Repository,
    payload: bytes,
    raw_length: int,
    blob_type: BlobType = BlobType.DATA,
    blob_id: bytes | None = None,
    trailer: bytes | None = None,
) -> bytes:
    """A blob stored as given (flag byte and body, sealed), in a pack of its own, indexed;
    ``trailer`` replaces the pack's last six bytes."""
    blob_id = blob_id or os.urandom(32)
    writer = PackWriter()
    writer.add(blob_type, blob_id, repo.key.seal(payload), raw_length)
    pack_id, data, entries = writer.finish(repo.key)
    if trailer is not None:
        data = data[:-6] + trailer
    repo.store.put(pack_key(pack_id), data)
    repo.save_index({pack_id: entries})
    repo.index.add_pack(pack_id, entries)
    return blob_id


def zstd_frame(declared: int | None, blocks: bytes) -> bytes:
    """A zstd frame (RFC 8878) by hand: a declared content size (8 bytes) or none."""
    no_size = bytes((0x00, 0x38))  # window 2^(10+7) = 128 KiB
    sized = bytes((0xE0,)) + struct.pack("<Q", declared or 0)  # single segment, 8-byte size
    header = no_size if declared is None else sized
    return b"\x28\xb5\x2f\xfd" + header + blocks


def rle_frame(total: int, declared: int | None) -> bytes:
    """An honest bomb: ``total`` bytes of "A" in 4-byte RLE blocks of 128 KiB."""
    block = 128 << 10
    out = bytearray()
    while total > 0:
        size = min(block, total)
        total -= size
        out += struct.pack("<I", (size << 3) | (1 << 1) | (total == 0))[:3] + b"A"
    return zstd_frame(declared, bytes(out))


def raw_block(data: bytes) -> bytes:
    """One last raw block holding ``data``."""
    return struct.pack("<I", (len(data) << 3) | 1)[:3] + data


def tree_of(repo: Repository, nodes: Sequence[Node]) -> str:
    with repo.writer() as writer:
        blob_id, _ = writer.save(BlobType.TREE, encode_tree(list(nodes)))
    return blob_id.hex()


def save_raw_tree_text(repo: Repository, text: bytes) -> str:
    with repo.writer() as writer:
        blob_id, _ = writer.save(BlobType.TREE, text)
    return blob_id.hex()


@dataclass(frozen=True)
class Ran:
    code: int
    out: bytes
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(repo: Repository | Path, *args: str | os.PathLike[str], timeout: float = 120) -> Ran:
    """``safehold ARGS`` on the repository, in a child under 1 GiB of address space; a
    timeout (a hang) or a traceback fails the test."""
    location = repo if isinstance(repo, Path) else Path(repo.store.location)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env.update(SAFEHOLD_REPOSITORY=str(location), SAFEHOLD_PASSWORD=PASSWORD.decode())
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [*SAFEHOLD, *map(str, args)],
        capture_output=True,
        env=env,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )
    err = proc.stderr.decode(errors="replace")
    for sign in ("Traceback", "internal error", "MemoryError"):
        assert sign not in err, f"safehold {' '.join(map(str, args))}:\n{err[-3000:]}"
    return Ran(proc.returncode, proc.stdout, err)


def index_doc(packs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"packs": packs}, separators=(",", ":")).encode()


def remove_tree(top: Path) -> None:
    """Remove ``top`` and everything below it, however deep, without recursion.

    A restored chain of thousands of directories is deeper than a recursive rmtree (Python
    3.11's, pytest's clean-up of old temporary directories) can go, and its paths are longer
    than PATH_MAX. So each directory's subdirectories are renamed up into ``top`` (every
    path stays two levels long), its other entries unlinked, and it is removed empty.
    """
    if not top.is_dir() or top.is_symlink():
        top.unlink(missing_ok=True)
        return
    hoisted = 0
    while True:
        with os.scandir(top) as entries:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        if not names:
            break
        for name, is_dir in names:
            if not is_dir:
                os.unlink(top / name)
                continue
            inner = top / name
            inner.chmod(0o700)  # a restored directory may be read-only
            with os.scandir(inner) as entries:
                below = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for child, child_is_dir in below:
                if child_is_dir:
                    while (top / f".hoisted-{hoisted}").exists():
                        hoisted += 1
                    os.rename(inner / child, top / f".hoisted-{hoisted}")
                else:
                    os.unlink(inner / child)
            os.rmdir(inner)
    os.rmdir(top)
