"""Rendering: JSON for machines, rich tables and progress bars for people.

rich is imported only when something is rendered with it (40 ms of start-up that a
quiet or --json run, e.g. from a scheduler, does not need).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from safehold.sources.setup_check import Finding

__all__ = [
    "BarProgress",
    "ErrorPrinter",
    "count",
    "err",
    "out",
    "print_checks",
    "print_json",
    "quoted",
]

_PLURALS = {"entry": "entries"}


@functools.cache
def out() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@functools.cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def print_checks(command: str, findings: list[Finding], as_json: bool) -> bool:
    """`pg check`, `mysql check`: one line per check (JSON: one document); True if all ok."""
    ok = all(f.ok for f in findings)
    if as_json:
        print_json(
            {
                "message_type": command.replace(" ", "_"),
                "ok": ok,
                "checks": [f.to_dict() for f in findings],
            }
        )
        return ok
    for f in findings:
        sys.stdout.write(f"{'ok  ' if f.ok else 'FAIL'}  {f.name}: {f.message}\n")
    failed = sum(not f.ok for f in findings)
    sys.stdout.write(
        f"{command}: {'all checks passed' if ok else count(failed, 'check') + ' failed'}\n"
    )
    sys.stdout.flush()
    return ok


def quoted(name: bytes) -> str:
    """A name safe to show on a terminal, as ``ls`` and restic do: control characters
    (escape sequences, a newline that would forge a line), bytes that are not UTF-8 and
    backslashes appear as backslash escapes; the name's other characters as they are."""
    return _QUOTED.sub(_escape, name.decode("utf-8", "surrogateescape"))


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"  # a surrogate: a raw byte


_QUOTED = re.compile("[\x00-\x1f\x7f-\x9f\\\\\udc80-\udcff]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _shown(path: str) -> str:
    """A path in an error line: one line whatever its name holds (a snapshot's names may
    carry newlines and escape sequences)."""
    return quoted(path.encode("utf-8", "surrogateescape"))


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``: a number and its noun, agreeing."""
    return f"{n} {noun}" if n == 1 else f"{n} {_PLURALS.get(noun, noun + 's')}"


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ErrorPrinter:
    """Per-item errors: one line each on stderr, or JSON lines with --json; no bar."""

    wants_totals = False

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._lock = threading.Lock()

    def set_total(self, files: int, size: int) -> None:
        pass

    def advance(self, files: int, size: int) -> None:
        pass

    def error(self, path: str, message: str) -> None:
        with self._lock:
            if self._json:
                print_json({"message_type": "error", "item": path, "error": message})
            else:
                sys.stderr.write(f"error: {_shown(path)}: {message}\n")
                sys.stderr.flush()


class BarProgress(ErrorPrinter):
    """A rich bar on a terminal: files, bytes, throughput and time left."""

    def __init__(self, verb: str) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(as_json=False)
        self.wants_totals = True
        self._bar = Progress(
            TextColumn(f"[bold]{verb}"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(binary_units=True),  # KiB, MiB, GiB: as the summaries (human_size)
            _binary_speed_column(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err(),
            transient=True,
        )
        self._task = self._bar.add_task(verb, total=None, files="0")
        self._files = 0
        self._files_total: int | None = None

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def _files_text(self) -> str:
        total = f"/{self._files_total}" if self._files_total is not None else ""
        return f"{self._files}{total}"

    def set_total(self, files: int, size: int) -> None:
        self._files_total = files
        self._bar.update(self._task, total=size, files=self._files_text())

    def advance(self, files: int, size: int) -> None:
        self._files += files
        self._bar.update(self._task, advance=size, files=self._files_text())

    def error(self, path: str, message: str) -> None:
        self._bar.console.print(f"error: {_shown(path)}: {message}", markup=False)


def _binary_speed_column() -> Any:
    """rich's TransferSpeedColumn in binary units (it has decimal ones only)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class BinarySpeedColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            text = "?" if speed is None else f"{human_size(speed)}/s"
            return Text(text, style="progress.data.speed")

    return BinarySpeedColumn()
