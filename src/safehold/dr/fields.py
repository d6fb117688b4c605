"""The value types of safehold.toml: names, cron schedules, durations, paths.

Each validator raises ``PydanticCustomError`` with a sentence that says what was expected
and what was found, so that a policy error reads well without pydantic's wording.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from safehold.dr.schedule import cron_error

__all__ = [
    "CONTINUOUS",
    "OFF",
    "AbsolutePath",
    "ContinuousOrCron",
    "Cron",
    "CronOrOff",
    "EnvName",
    "Interval",
    "Listen",
    "Name",
    "PolicyModel",
    "PositiveInterval",
    "Text",
    "describe",
    "fail",
    "format_interval",
    "parse_interval",
]

OFF = "off"
CONTINUOUS = "continuous"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_INTERVAL_PART = re.compile(r"(\d+)([a-zA-Z]*)")
_ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PolicyModel(BaseModel):
    """Every table of the policy: unknown keys are errors, TOML types are not coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def fail(kind: str, message: str) -> PydanticCustomError:
    """An error whose message is ``message`` as written (no pydantic prefix)."""
    return PydanticCustomError(kind, "{reason}", {"reason": message})


def describe(value: Any) -> str:
    """A TOML value as a user would name it: ``string 'x'``, ``integer 5``, ``table``."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime | date | time):
        return f"date-time {value.isoformat()}"
    return type(value).__name__


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise fail("expected_type", f"expected {what}, got {describe(value)}")
    return value


def _name(value: Any) -> str:
    text = _string(value, "a name")
    if not _NAME.match(text):
        raise fail(
            "name",
            f"invalid name {text!r}: use letters, digits, '_', '.' and '-',"
            " starting with a letter or digit",
        )
    return text


def _cron(value: Any) -> str:
    text = _string(value, "a cron expression such as '0 2 * * *'").strip()
    problem = cron_error(text)
    if problem is not None:
        raise fail("cron", problem)
    return text


def _cron_or_off(value: Any) -> str:
    if value == OFF:
        return OFF
    return _cron(value)


def _continuous_or_cron(value: Any) -> str:
    if value == CONTINUOUS:
        return CONTINUOUS
    return _cron_or_off(value)


def parse_interval(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``1h30m``, ``2d``, ``1w``: parts with units s, m, h, d, w."""
    spec = text.strip()
    example = "use a number with a unit s, m, h, d or w, e.g. 30m, 1h, 1h30m"
    total = 0
    pos = 0
    seen: set[str] = set()
    while pos < len(spec):
        match = _INTERVAL_PART.match(spec, pos)
        if match is None or match[2] not in _INTERVAL_UNITS:
            raise fail("duration", f"invalid duration {text!r}: {example}")
        if match[2] in seen:
            raise fail("duration", f"invalid duration {text!r}: unit {match[2]!r} given twice")
        seen.add(match[2])
        total += int(match[1]) * _INTERVAL_UNITS[match[2]]
        pos = match.end()
    if not spec:
        raise fail("duration", f"empty duration: {example}")
    return timedelta(seconds=total)


def format_interval(value: timedelta) -> str:
    """The shortest text ``parse_interval`` reads back to ``value`` (``1h30m``, ``0s``)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _interval(value: Any) -> timedelta:
    text = _string(value, "a duration such as '30m' or '1h'")
    return parse_interval(text)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise fail("duration", "must be longer than zero")
    return value


def _absolute(value: Any) -> str:
    text = _string(value, "an absolute path")
    if not text.startswith("/"):
        raise fail("path", f"expected an absolute path, got {text!r}")
    return text


def _text(value: Any) -> str:
    text = _string(value, "a string")
    if not text.strip():
        raise fail("empty", "must not be empty")
    return text


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not value or value[0].isdigit():
        raise fail("env_name", "expected the name of an environment variable")
    if not set(value) <= _ENV_NAME_CHARS:
        raise fail("env_name", f"{value!r} is not an environment variable name")
    return value


def _listen(value: Any) -> str:
    if value == OFF:
        return OFF
    if not isinstance(value, str) or value.rpartition(":")[0] == "":
        raise fail("listen", "expected HOST:PORT such as '127.0.0.1:9464', or 'off'")
    port = value.rpartition(":")[2]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise fail("listen", f"invalid port in {value!r}: expected 1 to 65535")
    return value


Name = Annotated[str, BeforeValidator(_name)]
EnvName = Annotated[str, BeforeValidator(_env_name)]
Listen = Annotated[str, BeforeValidator(_listen)]  # HOST:PORT or "off"
Cron = Annotated[str, BeforeValidator(_cron)]
CronOrOff = Annotated[str, BeforeValidator(_cron_or_off)]
ContinuousOrCron = Annotated[str, BeforeValidator(_continuous_or_cron)]
Interval = Annotated[timedelta, BeforeValidator(_interval)]
PositiveInterval = Annotated[timedelta, BeforeValidator(_interval), AfterValidator(_positive)]
AbsolutePath = Annotated[str, BeforeValidator(_absolute)]
Text = Annotated[str, BeforeValidator(_text)]
