"""A repository in a local directory or on an external disk: the embedded default."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from safehold.errors import AlreadyExists, CorruptObject, NotARepository, NotFound, StoreError
from safehold.storage.base import ObjectInfo

__all__ = ["LocalStore"]


class LocalStore:
    """Objects are files; a put writes a temporary file, fsyncs it and renames it in."""

    def __init__(self, root: str | Path, connections: int | None = None) -> None:
        self.root = Path(root).absolute()
        # parallel pack writes in a backup: two keep a local disk busy (measured)
        self.connections = connections or 2
        self.location = str(self.root)
        self._prefix = f"{self.root}/"
        self._made_dirs: set[Path] = set()

    def exists(self) -> bool:
        if self.root.is_dir():
            return True
        if self.root.exists():  # a file where the repository's directory should be
            raise NotARepository(self.location, "it is a file, not a directory")
        return False

    def create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.root}: {exc.strerror}") from exc

    def _path(self, key: str) -> str:
        """The file of an object (a string: restore calls this for every blob)."""
        if not key or key[0] == "/" or (".." in key and ".." in key.split("/")):
            raise StoreError(f"invalid object key {key!r}")
        return f"{self._prefix}{key}"

    def _create_temp(self, tmp: Path) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        if tmp.parent not in self._made_dirs:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(tmp.parent)
        try:
            return os.open(tmp, flags, 0o600)
        except FileNotFoundError:  # the directory was removed since (prune empties them)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            return os.open(tmp, flags, 0o600)

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        path = Path(self._path(key))
        tmp = path.with_name(f".{path.name}.tmp-{os.urandom(8).hex()}")
        try:
            fd = self._create_temp(tmp)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if if_absent:
                _link_if_absent(tmp, path)
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            raise AlreadyExists(key) from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            detail = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
            raise StoreError(f"cannot write {key} in {self.root}: {detail}") from exc

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        """The object's bytes, from a regular file only.

        Whoever can write to the disk can plant a FIFO (a read would block forever), a
        symlink to ``/dev/zero`` (a read would never end) or a device: the file is opened
        without following a symlink and without blocking, and anything but a regular file
        is damage. A read never asks for more than the file holds, whatever the caller's
        range (an index entry may claim a 2^40-byte blob): the result is shorter than asked
        when the object ends first, and callers check.
        """
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
                raise CorruptObject(key, "is a symbolic link, not a regular file") from None
            raise StoreError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise NotFound(key)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptObject(key, f"is {_file_kind(st.st_mode)}, not a regular file")
            offset, length = byte_range if byte_range is not None else (0, st.st_size)
            return _read_range(fd, offset, max(0, min(length, st.st_size - offset)))
        except OSError as exc:
            raise StoreError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        for dirpath, dirnames, filenames in os.walk(start, onerror=_raise_unreadable):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue  # temporary files of an unfinished put
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:  # lstat: a planted symlink is listed as itself (get refuses it)
                        st = full.lstat()
                        yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                    except FileNotFoundError:
                        continue

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = os.lstat(self._path(key))
        except FileNotFoundError:
            raise NotFound(key) from None
        if stat.S_ISDIR(st.st_mode):
            raise NotFound(key)
        if not stat.S_ISREG(st.st_mode):  # planted: see ``get``
            raise CorruptObject(key, f"is {_file_kind(st.st_mode)}, not a regular file")
        return ObjectInfo(key, st.st_size)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            raise NotFound(key) from None


def _link_if_absent(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (FileExistsError then).

    ``link`` is atomic; file systems without hard links (FAT, exFAT, some network
    disks) get an exclusive create of the name, then a rename over it.
    """
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: the new name lives in the directory's own blocks."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _raise_unreadable(exc: OSError) -> None:
    """os.walk skips directories it cannot read; a store must not hide objects that way."""
    if isinstance(exc, FileNotFoundError):
        return
    raise StoreError(f"cannot list {exc.filename}: {exc.strerror}") from exc


def _read_range(fd: int, offset: int, length: int) -> bytes:
    """Up to ``length`` bytes from ``offset``; fewer only if the file shrinks meanwhile."""
    chunks = []
    while length > 0 and (chunk := os.pread(fd, min(length, 1 << 24), offset)):
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFSOCK: "a socket",
        stat.S_IFLNK: "a symbolic link",
    }
    return kinds.get(stat.S_IFMT(mode), "not a regular file")
