"""An in-memory store for unit tests of the layers above storage."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from safehold.errors import AlreadyExists, NotFound
from safehold.storage.base import ObjectInfo

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self, location: str = "memory://") -> None:
        self.location = location
        self.objects: dict[str, bytes] = {}
        self._created = False
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self._created or bool(self.objects)

    def create(self) -> None:
        self._created = True

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None:
        with self._lock:
            if if_absent and key in self.objects:
                raise AlreadyExists(key)
            self.objects[key] = bytes(data)

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        try:
            data = self.objects[key]
        except KeyError:
            raise NotFound(key) from None
        if byte_range is None:
            return data
        offset, length = byte_range
        return data[offset : offset + length]

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((k, len(v)) for k, v in self.objects.items() if k.startswith(prefix))
        for key, size in items:
            yield ObjectInfo(key, size)

    def stat(self, key: str) -> ObjectInfo:
        try:
            return ObjectInfo(key, len(self.objects[key]))
        except KeyError:
            raise NotFound(key) from None

    def delete(self, key: str) -> None:
        with self._lock:
            if self.objects.pop(key, None) is None:
                raise NotFound(key)
