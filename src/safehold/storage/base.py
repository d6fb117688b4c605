"""The object-store interface that every backend implements.

Guarantees a backend must give (kopia's list, restic's shape):
- read-after-write: a ``get``/``stat``/``list`` after a successful ``put`` sees the object;
- atomic put: readers see the whole object or nothing, never a partial one;
- ``put(..., if_absent=True)`` creates or raises ``AlreadyExists``, never overwrites;
- missing objects raise ``NotFound``; retryable failures raise ``TransientStoreError``.
Key layout belongs to ``repo/``; a store only moves bytes.

A store may also have ``connections: int``, the number of requests worth running at once
(the backup's parallel pack uploads use it; 2 when a store does not say).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["ObjectInfo", "ObjectStore"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None  # when it was written, where the store says (lists)


class ObjectStore(Protocol):
    """Bytes under string keys ("data/ab/abcd…"); "/" separates prefixes."""

    location: str

    def exists(self) -> bool:
        """Whether the store's root (directory, bucket prefix) is there at all."""
        ...

    def create(self) -> None:
        """Create the store's root; a no-op when it is already there."""
        ...

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> None: ...

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        """The object, or ``length`` bytes from ``offset`` when ``byte_range=(offset, length)``.

        A range past the end of the object gives the bytes that exist (as S3 does); the
        caller, who knows the expected length, decides whether that means damage.
        """
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing one raises ``NotFound``."""
        ...
