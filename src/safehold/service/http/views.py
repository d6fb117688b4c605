"""How the pages present the documents: card colours, durations, times.

Times are rendered as ``<time datetime="ISO">`` holding the UTC time and its age
("12 min ago"); static/dashboard.js rewrites them into the viewer's own time zone and
keeps the ages current, so the page reads right without scripts too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

from safehold.dr.fields import format_interval

__all__ = ["AMBER_SHARE", "ago", "card_state", "register_filters"]

AMBER_SHARE = 0.75  # exposure at this share of the RPO turns a card amber


def card_state(service: dict[str, Any]) -> str:
    """``green`` within objectives, ``amber`` approaching (exposure at AMBER_SHARE of
    the RPO, or a source failing or with a problem), ``red`` outside."""
    if not service["within_objectives"]:
        return "red"
    exposure, rpo = service["exposure_seconds"], service["rpo_seconds"]
    troubled = any(s["failing_since"] or s["problem"] for s in service["sources"])
    if exposure is None or exposure >= AMBER_SHARE * rpo or troubled:
        return "amber"
    return "green"


def ago(moment: datetime, now: datetime | None = None) -> str:
    """``12 min ago``, ``in 3 h``, ``just now``."""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 10:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def _time(value: str | datetime | None) -> Markup:
    if value is None:
        return Markup("—")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    iso = moment.astimezone(UTC).isoformat()
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(
        f'<time datetime="{escape(iso)}" title="{escape(text)}">'
        f'<span class="abs">{escape(text)}</span> <span class="rel">({escape(ago(moment))})</span>'
        "</time>"
    )


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return format_interval(timedelta(seconds=round(seconds)))


def _size(n: int | float | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def register_filters(env: Environment) -> None:
    env.filters["when"] = _time
    env.filters["span"] = _span
    env.filters["size"] = _size
    env.globals["card_state"] = card_state
