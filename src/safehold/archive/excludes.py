"""Which paths a backup leaves out: restic's exclude patterns and CACHEDIR.TAG."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from safehold.errors import InvalidArgument

__all__ = ["Excluder", "read_exclude_file"]

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


class Excluder:
    """A pattern without "/" matches a name anywhere; one with "/" matches the whole path.

    ``*`` and ``?`` are shell globs; ``**`` spans directories. A match on a directory
    excludes everything below it.
    """

    def __init__(self, patterns: list[str], exclude_caches: bool = False) -> None:
        self._name_patterns = [p for p in patterns if "/" not in p.rstrip("/")]
        self._path_patterns = [p.rstrip("/") for p in patterns if "/" in p.rstrip("/")]
        self._exclude_caches = exclude_caches

    def excludes(self, path: bytes, name: bytes) -> bool:
        text_name = os.fsdecode(name)
        if any(fnmatch.fnmatchcase(text_name, p) for p in self._name_patterns):
            return True
        text_path = os.fsdecode(path)
        return any(fnmatch.fnmatchcase(text_path, p) for p in self._path_patterns)

    def is_cache_dir(self, path: bytes) -> bool:
        if not self._exclude_caches:
            return False
        try:
            with open(os.path.join(path, b"CACHEDIR.TAG"), "rb") as f:
                return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
        except OSError:
            return False


def read_exclude_file(path: str) -> list[str]:
    """Patterns one per line; blank lines and lines starting with # are ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read exclude file {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
