"""Which paths a backup leaves out: restic's exclude patterns and CACHEDIR.TAG."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from safehold.errors import InvalidArgument

__all__ = ["Excluder", "read_exclude_file"]

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


class Excluder:
    """A pattern without "/" matches a name anywhere; one with "/" matches a path.

    A path pattern that starts with "/" matches the whole absolute path; one that does not
    matches its last components (``cache/tmp`` matches ``/home/u/cache/tmp``), as restic's.
    ``*``, ``?`` and ``[...]`` are globs within one component (never matching "/"), with
    ``\\`` escaping, as Go's ``filepath.Match``; ``**`` as a whole component spans zero or
    more directories. A trailing "/" is ignored. ``ignore_case`` patterns match whatever
    the case (restic's ``--iexclude``). A match on a directory excludes everything below it.
    The same matching serves ``find`` and ``rewrite --exclude``.
    """

    def __init__(
        self,
        patterns: list[str],
        exclude_caches: bool = False,
        ignore_case: Sequence[str] = (),
    ) -> None:
        both = [(p.rstrip("/"), False) for p in patterns]
        both += [(p.rstrip("/"), True) for p in ignore_case]
        for pattern, _ in both:
            if not pattern:
                raise InvalidArgument("invalid pattern '': a pattern must not be empty")
        self._name_regex = _any_of(
            [(_component_regex(p), i) for p, i in both if "/" not in p], both
        )
        self._path_regex = _any_of([(_path_regex(p), i) for p, i in both if "/" in p], both)
        self._exclude_caches = exclude_caches
        self.active = bool(both)

    def excludes(self, path: bytes, name: bytes) -> bool:
        if self._name_regex is not None and self._name_regex.fullmatch(os.fsdecode(name)):
            return True
        if self._path_regex is None:
            return False
        return self._path_regex.fullmatch(os.fsdecode(path)) is not None

    def is_cache_dir(self, path: bytes) -> bool:
        if not self._exclude_caches:
            return False
        try:
            with open(os.path.join(path, b"CACHEDIR.TAG"), "rb") as f:
                return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
        except OSError:
            return False


def _any_of(
    regexes: list[tuple[str, bool]], patterns: list[tuple[str, bool]]
) -> re.Pattern[str] | None:
    """One regular expression for all of them; (regex, ignore case) each."""
    if not regexes:
        return None
    try:
        return re.compile("|".join(f"(?{'i' if i else ''}:{r})" for r, i in regexes), re.DOTALL)
    except re.error as exc:  # e.g. a reversed range: [z-a]
        bad = next((p for p, _ in patterns if _is_bad(p)), "")
        raise InvalidArgument(f"invalid pattern {bad!r}: {exc.msg}") from None


def _is_bad(pattern: str) -> bool:
    try:
        re.compile(_path_regex(pattern) if "/" in pattern else _component_regex(pattern))
    except re.error:
        return True
    return False


def _path_regex(pattern: str) -> str:
    """A regular expression (for ``fullmatch``) equivalent to one path pattern."""
    parts = [p for p in pattern.split("/") if p]
    body = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            body.append(".*" if last else "(?:[^/]+/)*")
        else:
            body.append(_component_regex(part) + ("" if last else "/"))
    return ("/" if pattern.startswith("/") else "(?:.*/)?") + "".join(body)


def _component_regex(part: str) -> str:
    """One path component's glob: ``*``, ``?``, ``[...]`` and ``\\`` escapes, never "/"."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i < len(part):
            out.append(re.escape(part[i]))
            i += 1
        elif c == "[":
            negate = part[i : i + 1] in ("!", "^")
            start = i + 1 if negate else i
            end = part.find("]", start + 1 if part[start : start + 1] == "]" else start)
            if end == -1:
                out.append(re.escape(c))
                continue
            body = "".join("\\" + ch if ch in "\\^[]" else ch for ch in part[start:end])
            out.append(f"[{'^/' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(c))
    return "".join(out)


def read_exclude_file(path: str) -> list[str]:
    """Patterns one per line; blank lines and lines starting with # are ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read exclude file {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
