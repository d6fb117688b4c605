"""Progress reporting: a Protocol the CLI implements, and a silent default."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    wants_totals: bool
    """Whether totals are shown: counting them walks the tree a second time."""

    def set_total(self, files: int, size: int) -> None:
        """Totals once known (a scan runs beside the work), for a percentage and ETA."""
        ...

    def advance(self, files: int, size: int) -> None: ...

    def error(self, path: str, message: str) -> None:
        """A per-item failure that does not stop the work (the run ends with exit 3)."""
        ...


class NullProgress:
    wants_totals = False

    def set_total(self, files: int, size: int) -> None:
        pass

    def advance(self, files: int, size: int) -> None:
        pass

    def error(self, path: str, message: str) -> None:
        pass
