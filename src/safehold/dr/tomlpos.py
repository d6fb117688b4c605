"""Where each key of a TOML document is: its line, for error messages.

tomllib returns values without positions, so after a successful parse this small scanner
reads the text once more and records the line of every key, table header, array-of-tables
element and array element, as a path of keys and indices (``("services", "sync",
"sources", 0, "schedules", "full")``). It trusts that the text is valid TOML (tomllib has
said so) and only needs to tell keys, strings, comments and brackets apart.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["KeyPath", "find_line", "key_lines"]

KeyPath = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}  # concrete path -> elements so far

    # -- characters -------------------------------------------------------------------
    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def skip_blank(self, newlines: bool) -> None:
        """Spaces and tabs, comments, and (when ``newlines``) line ends."""
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                end = self.text.find("\n", self.pos)
                self.advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    # -- keys -------------------------------------------------------------------------
    def key(self) -> list[str]:
        """A dotted key: bare, "basic" or 'literal' parts."""
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            c = self.peek()
            if c in "\"'":
                parts.append(self.string_value())
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE:
                    self.advance()
                parts.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.advance()

    def string_value(self) -> str:
        """Consume a string of any of the four kinds; return its (roughly unescaped) text."""
        quote = self.peek()
        if self.peek(3) == quote * 3:
            self.advance(3)
            end = self.text.find(quote * 3, self.pos)
            while self.text[end + 3 : end + 4] == quote:  # up to two quotes may close it
                end += 1
            raw = self.text[self.pos : end]
            self.advance(end + 3 - self.pos)
            return raw
        self.advance()
        chars: list[str] = []
        while self.peek() != quote:
            if quote == '"' and self.peek() == "\\":
                chars.append(self.peek(2)[1:])
                self.advance(2)
                continue
            chars.append(self.peek())
            self.advance()
        self.advance()
        return "".join(chars)

    # -- document ---------------------------------------------------------------------
    def concrete(self, keys: Sequence[str], base: KeyPath = ()) -> KeyPath:
        """The path of a dotted key, with the current index after each array of tables."""
        path: KeyPath = base
        for key in keys:
            path = (*path, key)
            count = self.array_tables.get(path)
            if count is not None:
                path = (*path, count - 1)
        return path

    def record(self, path: KeyPath, line: int) -> None:
        for i in range(1, len(path) + 1):
            self.lines.setdefault(path[:i], line)

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            line = self.line
            if self.peek(2) == "[[":
                self.advance(2)
                keys = self.key()
                self.advance(2)
                parent = self.concrete(keys[:-1])
                array = (*parent, keys[-1])
                index = self.array_tables.get(array, 0)
                self.array_tables[array] = index + 1
                table = (*array, index)
                self.record(table, line)
            elif self.peek() == "[":
                self.advance()
                keys = self.key()
                self.advance()
                table = self.concrete(keys)
                self.record(table, line)
            else:
                keys = self.key()
                self.skip_blank(newlines=False)
                self.advance()  # "="
                path = (*table, *keys)
                self.record(path, line)
                self.value(path)

    def value(self, path: KeyPath) -> None:
        self.skip_blank(newlines=False)
        c = self.peek()
        if c in "\"'":
            self.string_value()
        elif c == "[":
            self.advance()
            index = 0
            while True:
                self.skip_blank(newlines=True)
                if self.peek() == "]":
                    self.advance()
                    return
                self.record((*path, index), self.line)
                self.value((*path, index))
                index += 1
                self.skip_blank(newlines=True)
                if self.peek() == ",":
                    self.advance()
        elif c == "{":
            self.advance()
            while True:
                self.skip_blank(newlines=True)
                if self.peek() == "}":
                    self.advance()
                    return
                line = self.line
                keys = self.key()
                self.skip_blank(newlines=False)
                self.advance()  # "="
                self.record((*path, *keys), line)
                self.value((*path, *keys))
                self.skip_blank(newlines=True)
                if self.peek() == ",":
                    self.advance()
        else:  # number, boolean, date-time: up to the next delimiter
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}\n#":
                self.advance()


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line (from 1) of every key path in valid TOML ``text``."""
    scanner = _Scanner(text)
    scanner.document()
    return scanner.lines


def find_line(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of ``path``, or of its nearest ancestor that appears in the text (else 1)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return 1
