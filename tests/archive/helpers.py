"""Helpers for the file-tree tests: build real trees, back them up, compare them fully."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safehold.archive.restore import RestoreOptions, Restorer, RestoreStats
from safehold.archive.snapshotter import BackupRequest, BackupResult, run_backup
from safehold.archive.tree import NODE_TYPE_OF_MODE, Node, encode_tree
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository

__all__ = [
    "Entry",
    "assert_same_tree",
    "backup",
    "deep_tree",
    "describe_tree",
    "diff_descriptions",
    "inside",
    "require_user_xattrs",
    "restore",
    "save_raw_tree",
    "save_tree",
    "set_mtimes",
    "write",
]

# Allocation may differ a little between two copies of one file (the file system's
# preallocation, where the last block falls); more than this means holes were filled.
SPARSE_SLACK_BYTES = 16 * 1024


@dataclass(frozen=True)
class Entry:
    """Everything a faithful restore must reproduce about one path (atime and ctime aside)."""

    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int
    content: bytes | None  # file contents; None for other types
    target: bytes | None  # symlink target
    xattrs: tuple[tuple[str, bytes], ...]
    nlink: int
    allocated: int  # st_blocks * 512, only meaningful for files

    def comparable(self) -> tuple[Any, ...]:
        """The fields compared directly; allocation and link groups are checked apart."""
        return (
            self.type,
            self.mode,
            self.uid,
            self.gid,
            self.mtime_ns,
            self.size if self.type != "dir" else 0,
            self.content,
            self.target,
            self.xattrs,
            self.nlink if self.type != "dir" else 0,
        )


def _xattrs(path: bytes, kind: str) -> tuple[tuple[str, bytes], ...]:
    if kind in ("symlink", "fifo", "socket", "chardev", "blockdev"):
        return ()  # user.* xattrs exist only on files and directories
    names = os.listxattr(path, follow_symlinks=False)
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def _entry(path: bytes) -> tuple[Entry, tuple[int, int]]:
    st = os.lstat(path)
    kind = NODE_TYPE_OF_MODE[stat.S_IFMT(st.st_mode)]
    content = None
    if kind == "file":
        with open(path, "rb") as f:
            content = f.read()
    entry = Entry(
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        size=st.st_size,
        content=content,
        target=os.readlink(path) if kind == "symlink" else None,
        xattrs=_xattrs(path, kind),
        nlink=st.st_nlink,
        allocated=st.st_blocks * 512,
    )
    return entry, (st.st_dev, st.st_ino)


def describe_tree(root: str | os.PathLike[str]) -> tuple[dict[bytes, Entry], set[frozenset[bytes]]]:
    """Every path below ``root`` (relative, root itself as b".") and its hardlink groups.

    A hardlink group is the set of paths that share one inode, for non-directories whose
    link count is above one.
    """
    top = os.fsencode(root)
    entries: dict[bytes, Entry] = {}
    inodes: dict[tuple[int, int], set[bytes]] = {}

    def visit(path: bytes, rel: bytes) -> None:
        entry, key = _entry(path)
        entries[rel] = entry
        if entry.type != "dir" and entry.nlink > 1:
            inodes.setdefault(key, set()).add(rel)
        if entry.type == "dir":
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name), name if rel == b"." else rel + b"/" + name)

    visit(top, b".")
    return entries, {frozenset(group) for group in inodes.values()}


def diff_descriptions(
    expected: tuple[dict[bytes, Entry], set[frozenset[bytes]]],
    actual: tuple[dict[bytes, Entry], set[frozenset[bytes]]],
) -> list[str]:
    """Human-readable differences between two ``describe_tree`` results; empty if none."""
    (want, want_links), (got, got_links) = expected, actual
    problems: list[str] = []
    for rel in sorted(want.keys() - got.keys()):
        problems.append(f"missing: {rel!r}")
    for rel in sorted(got.keys() - want.keys()):
        problems.append(f"unexpected: {rel!r}")
    fields = ("type", "mode", "uid", "gid", "mtime_ns", "size", "content", "target", "xattrs")
    for rel in sorted(want.keys() & got.keys()):
        a, b = want[rel], got[rel]
        if a.comparable() != b.comparable():
            for name, x, y in zip((*fields, "nlink"), a.comparable(), b.comparable(), strict=True):
                if x != y:
                    shown_x = x if name != "content" else f"<{len(x or b'')} bytes>"
                    shown_y = y if name != "content" else f"<{len(y or b'')} bytes>"
                    if name == "mode":
                        shown_x, shown_y = oct(int(x)), oct(int(y))
                    problems.append(f"{rel!r}: {name} {shown_x} != {shown_y}")
        if a.type == "file" and b.allocated > a.allocated + SPARSE_SLACK_BYTES:
            problems.append(
                f"{rel!r}: {b.allocated} bytes allocated, source had {a.allocated} (holes filled)"
            )
    if want_links != got_links:
        problems.append(
            f"hardlink groups differ: {sorted(map(sorted, want_links))} != "
            f"{sorted(map(sorted, got_links))}"
        )
    return problems


def assert_same_tree(source: str | os.PathLike[str], restored: str | os.PathLike[str]) -> None:
    """Fail with every difference between two trees (types, contents, metadata, links)."""
    problems = diff_descriptions(describe_tree(source), describe_tree(restored))
    assert not problems, "trees differ:\n  " + "\n  ".join(problems)


# ---- building trees ------------------------------------------------------------------


def write(path: Path | bytes, data: bytes = b"", mode: int | None = None) -> None:
    """Create a file (and its parent directories) holding ``data``."""
    os.makedirs(os.path.dirname(os.fsencode(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def set_mtimes(root: Path | bytes, base_ns: int = 1_600_000_000_123_456_789) -> None:
    """Give every entry below ``root`` a distinct mtime with nanoseconds, children first.

    Distinct odd nanoseconds make a restore that drops precision, or sets a directory's
    time before filling it, visible.
    """
    top = os.fsencode(root)
    paths: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(top):
        paths.extend(os.path.join(dirpath, n) for n in (*dirnames, *filenames))
    paths.sort(key=lambda p: (-p.count(b"/"), p))  # deepest first: parents last
    for i, path in enumerate([*paths, top]):
        ns = base_ns + i * 1_000_000_007
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def require_user_xattrs(directory: Path) -> Path:
    """``directory`` if ``user.*`` xattrs work there, else a new directory in /tmp or /work.

    Fails (never skips) when no candidate supports them.
    """
    tried = []
    for candidate in (directory, Path("/tmp"), Path("/work")):
        probe = candidate / f".xattr-probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            os.setxattr(probe, "user.probe", b"1")
            if candidate == directory:
                return directory
            return Path(tempfile.mkdtemp(prefix="safehold-xattr-", dir=candidate))
        except OSError as exc:
            tried.append(
                f"{candidate}: {exc.strerror} (errno {errno.errorcode.get(exc.errno or 0)})"
            )
        finally:
            probe.unlink(missing_ok=True)
    pytest.fail("no directory supports user.* extended attributes: " + "; ".join(tried))


def inside(target: Path, source: Path) -> Path:
    """Where a restore into ``target`` puts the absolute path ``source``."""
    return target / source.relative_to("/")


# ---- running the tool ----------------------------------------------------------------


def backup(repo: Repository, *paths: Path, **request: Any) -> BackupResult:
    return run_backup(repo, BackupRequest(paths=[str(p) for p in paths], tags=[], **request))


def restore(repo: Repository, tree: str, target: Path, **options: Any) -> RestoreStats:
    return Restorer(repo, RestoreOptions(workers=2, **options)).restore(tree, str(target))


# ---- crafting snapshots by hand ------------------------------------------------------


def save_tree(repo: Repository, nodes: Iterable[Node]) -> str:
    """Save one tree document built by the project's own encoder; returns its id."""
    return _save(repo, BlobType.TREE, encode_tree(list(nodes))).hex()


def save_raw_tree(repo: Repository, docs: list[Any]) -> str:
    """Save a tree document exactly as given: duplicates, odd names, any order, even
    entries that are not objects."""
    payload = json.dumps({"nodes": docs}, separators=(",", ":")).encode()
    return _save(repo, BlobType.TREE, payload).hex()


def deep_tree(repo: Repository, depth: int, leaf: bytes = b"leaf\n") -> str:
    """A chain of ``depth`` directories named "d" ending in a file "leaf"; one writer."""
    with repo.writer() as writer:
        blob_id, _ = writer.save(BlobType.DATA, leaf)
        node = Node(name=b"leaf", type="file", mode=0o644, size=len(leaf), content=[blob_id])
        tree_id, _ = writer.save(BlobType.TREE, encode_tree([node]))
        for _ in range(depth):
            node = Node(name=b"d", type="dir", mode=0o755, subtree=tree_id.hex())
            tree_id, _ = writer.save(BlobType.TREE, encode_tree([node]))
    return tree_id.hex()


def save_data(repo: Repository, data: bytes) -> bytes:
    return _save(repo, BlobType.DATA, data)


def _save(repo: Repository, blob_type: BlobType, payload: bytes) -> bytes:
    with repo.writer() as writer:
        blob_id, _ = writer.save(blob_type, payload)
    return blob_id


def iter_files(root: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            yield Path(dirpath) / name
