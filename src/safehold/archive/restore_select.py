"""Which entries of a snapshot a restore takes: ``--include`` paths and ``--exclude``
patterns (restic's ``restore --include/--exclude``, and their case-blind ``--i...`` forms).

An include is an absolute path of the snapshot: it and everything below it are restored,
and the directories above it are entered (their metadata left alone). An exclude is a
pattern (archive/excludes.py) and wins over an include: an excluded directory is skipped
with everything below it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

from safehold.archive.excludes import Excluder
from safehold.errors import InvalidArgument

__all__ = ["Choice", "Selection"]

Choice = Literal["all", "descend", "skip"]


class Selection:
    def __init__(
        self,
        includes: Sequence[str] = (),
        excludes: Sequence[str] = (),
        *,
        iincludes: Sequence[str] = (),
        iexcludes: Sequence[str] = (),
    ) -> None:
        self._includes = [(_include_path(p), False) for p in includes]
        self._includes += [(_include_path(p).lower(), True) for p in iincludes]
        self._excluder = Excluder(list(excludes), ignore_case=iexcludes)
        self.narrows = bool(self._includes)  # only a few paths: their trees are few

    def of(self, path: bytes) -> Choice:
        """ "all" below an include, "descend" above one, "skip" elsewhere or when excluded."""
        if self._excluder.active and self._excluder.excludes(path, path.rsplit(b"/", 1)[-1]):
            return "skip"
        if not self._includes or any(inc == b"/" for inc, _ in self._includes):
            return "all"
        descend = False
        for inc, case_blind in self._includes:
            here = path.lower() if case_blind else path
            if here == inc or here.startswith(inc + b"/"):
                return "all"
            descend = descend or inc.startswith(here + b"/")
        return "descend" if descend else "skip"


def _include_path(path: str) -> bytes:
    """An include as the snapshot spells paths: absolute, normalised, no trailing "/"."""
    if not path.startswith("/"):
        raise InvalidArgument(f"include {path!r} must be an absolute path, as in the snapshot")
    return b"/" + os.path.normpath(os.fsencode(path)).lstrip(b"/")
