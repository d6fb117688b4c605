"""A service's RPO exposure over time, from the job history, drawn as server-side SVG.

Exposure at a moment is how much would be lost if the service failed then: the age of
the oldest of its sources' recovery points. A backup's recovery point is the moment it
started, and it counts from the moment it ended; between backups the exposure grows one
second per second, so the curve is a sawtooth. Each successful (or partial) backup run in
the window is one point, at the exposure right after it; the last point is now, taken
from the live status, which also knows the archived logs of databases that the job
history does not (a source with continuous archiving is drawn from its backups only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from safehold.service.history import JobHistory, JobRun

__all__ = ["Chart", "ChartPoint", "exposure_chart"]

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 30  # plot margins
X_TICKS = 6
MIN_MARGIN = timedelta(seconds=5)
Y_STEPS = [
    n * unit
    for unit in (1, 60, 3600, 86400)
    for n in (1, 2, 5, 10, 15, 30)
    if n * unit <= 30 * 86400
]  # seconds between y ticks: 1s ... 30d


@dataclass(frozen=True)
class ChartPoint:
    moment: datetime
    exposure: float  # seconds
    x: float
    y: float
    job: str  # the run that brought the recovery point, or "now"


@dataclass
class Chart:
    start: datetime
    end: datetime
    rpo: float  # seconds
    points: list[ChartPoint] = field(default_factory=list)
    path: str = ""  # the SVG path of the sawtooth
    rpo_y: float = 0.0
    y_max: float = 0.0
    x_ticks: list[tuple[float, datetime]] = field(default_factory=list)
    y_ticks: list[tuple[float, float]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT

    @property
    def tick_format(self) -> str:
        """strftime of the time axis in UTC (the page's script shows local times)."""
        span = (self.end - self.start).total_seconds()
        return "%H:%M:%S" if span < 1200 else "%b %d %H:%M" if span > 172800 else "%H:%M"


def _worst(moment: datetime, points: dict[str, datetime | None]) -> float | None:
    """The exposure at ``moment``: None while a source has no recovery point yet."""
    if not points or any(p is None for p in points.values()):
        return None
    return max((moment - p).total_seconds() for p in points.values() if p is not None)


def _samples(
    targets: list[str], runs: list[JobRun], start: datetime, end: datetime
) -> tuple[list[tuple[datetime, float, str]], float | None]:
    """The sawtooth's corners (moment, exposure, job) and the exposure at ``start``."""
    recovery: dict[str, datetime | None] = dict.fromkeys(targets)
    corners: list[tuple[datetime, float, str]] = []
    first = None
    started = False
    for run in runs:
        assert run.ended is not None  # successes have ended
        if not started and run.ended >= start:
            first, started = _worst(start, recovery), True
        if run.target not in recovery or run.ended > end:
            continue
        before = _worst(run.ended, recovery)
        known = recovery[run.target]
        recovery[run.target] = run.started if known is None else max(known, run.started)
        after = _worst(run.ended, recovery)
        if run.ended >= start and after is not None:
            if before is not None:
                corners.append((run.ended, before, ""))
            corners.append((run.ended, after, run.job))
    if not started:
        first = _worst(start, recovery)
    return corners, first


def exposure_chart(
    history: JobHistory | None,
    service: str,
    targets: list[str],
    rpo: timedelta,
    now: datetime,
    now_exposure: float | None,
    window: timedelta,
    fit: bool = False,
) -> Chart:
    """The chart of ``service`` (its sources: ``targets``) over ``window`` before ``now``.
    Runs from one more window back give the recovery points the window starts with; with
    ``fit``, a history that begins inside the window shortens it to that history."""
    start = now - window
    runs = (
        [] if history is None else history.successes_since("backup", f"{service}/", start - window)
    )
    runs = [r for r in runs if r.schedule != "logs"]
    corners, first = _samples(targets, runs, start, now)
    if fit and first is None and corners:
        # a history younger than the window: start a little before its first point
        start = max(start, corners[0][0] - max((now - corners[0][0]) / 10, MIN_MARGIN))
        corners, first = _samples(targets, runs, start, now)
    chart = Chart(start, now, rpo.total_seconds())
    values = [e for _, e, _ in corners] + [chart.rpo * 1.2]
    if first is not None:
        values.append(first)
    if now_exposure is not None:
        values.append(now_exposure)
    step = next((s for s in Y_STEPS if max(values) / s <= 5), Y_STEPS[-1])
    chart.y_max = math.ceil(max(values) / step) * step
    span = (now - start).total_seconds()
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        return round(LEFT + plot_w * (moment - start).total_seconds() / span, 1)

    def y(seconds: float) -> float:
        return round(TOP + plot_h * (1 - seconds / chart.y_max), 1)

    path: list[str] = []
    if first is not None:
        path.append(f"M{x(start)},{y(first)}")
    for moment, exposure, job in corners:
        path.append(f"{'L' if path else 'M'}{x(moment)},{y(exposure)}")
        if job:
            chart.points.append(ChartPoint(moment, exposure, x(moment), y(exposure), job))
    if now_exposure is not None:
        path.append(f"{'L' if path else 'M'}{x(now)},{y(now_exposure)}")
        chart.points.append(ChartPoint(now, now_exposure, x(now), y(now_exposure), "now"))
    chart.path = " ".join(path)
    chart.rpo_y = y(chart.rpo)
    chart.x_ticks = [
        (x(start + (now - start) * i / X_TICKS), start + (now - start) * i / X_TICKS)
        for i in range(X_TICKS + 1)
    ]
    chart.y_ticks = [(y(v * step), v * step) for v in range(round(chart.y_max / step) + 1)]
    return chart
