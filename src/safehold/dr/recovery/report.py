"""The one record of a recovery: its plan, each step with start, end and outcome, what each
source reached, and the measures (RTO, data-loss window, skew). The progress lines, the
JSON lines of ``--json`` and the final summary are all read from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.repo.snapshot import parse_time

__all__ = ["Observer", "RecoveryReport", "SourceOutcome", "StepRecord", "utcnow"]

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class StepRecord:
    """One timed step; ``source`` is set for the per-source parts of a step."""

    step: str  # preflight, restore, start, health, summary
    started: str
    source: str | None = None
    ended: str | None = None
    seconds: float | None = None
    outcome: str | None = None  # ok, failed, skipped; None while it runs
    detail: str = ""  # the sentence that says what was decided or found

    def finish(self, outcome: str, detail: str) -> None:
        now = utcnow()
        self.ended = now.isoformat()
        self.seconds = round((now - parse_time(self.started)).total_seconds(), 3)
        self.outcome = outcome
        self.detail = detail

    def to_doc(self) -> dict[str, Any]:
        return {"message_type": "step", **asdict(self)}


@dataclass
class SourceOutcome:
    name: str
    kind: str
    snapshot_id: str
    target: str
    point: str  # the planned recovery point of this source
    reached: str | None = None  # what it actually reached (a database: its last replayed commit)
    port: int | None = None
    bytes_written: int = 0
    restored: bool = False
    started: bool = False
    replay_seconds: float | None = None  # postgres: its start until out of recovery
    restart_seconds: float | None = None  # postgres: the restart with its own settings


Observer = Callable[[StepRecord], None]


@dataclass
class RecoveryReport:
    plan: dict[str, Any]
    started: str = field(default_factory=lambda: utcnow().isoformat())
    steps: list[StepRecord] = field(default_factory=list)
    sources: dict[str, SourceOutcome] = field(default_factory=dict)
    ended: str | None = None
    healthy: bool | None = None
    outcome: str | None = None  # recovered, unhealthy, failed, refused
    error: str | None = None
    resumed: bool = False

    def begin(self, step: str, source: str | None = None) -> StepRecord:
        record = StepRecord(step, utcnow().isoformat(), source)
        self.steps.append(record)
        return record

    def rto_seconds(self) -> float | None:
        """Wall time from the start of the recovery to the service healthy."""
        if not self.healthy or self.ended is None:
            return None
        return round((parse_time(self.ended) - parse_time(self.started)).total_seconds(), 3)

    def data_loss_seconds(self) -> float | None:
        """The recovery point against the newest data the copy read holds."""
        newest, point = self.plan.get("newest_data"), self.plan.get("point")
        if not newest or not point:
            return None
        return round(max(0.0, (parse_time(newest) - parse_time(point)).total_seconds()), 3)

    def skew_seconds(self) -> float | None:
        """How far apart the sources' recovery points are."""
        points = [parse_time(s.point) for s in self.sources.values()]
        if not points:
            return None
        return round((max(points) - min(points)).total_seconds(), 3)

    def to_doc(self) -> dict[str, Any]:
        return {
            "message_type": "summary",
            "service": self.plan.get("service"),
            "outcome": self.outcome,
            "error": self.error,
            "healthy": self.healthy,
            "resumed": self.resumed,
            "started": self.started,
            "ended": self.ended,
            "rto_seconds": self.rto_seconds(),
            "point": self.plan.get("point"),
            "newest_data": self.plan.get("newest_data"),
            "data_loss_seconds": self.data_loss_seconds(),
            "skew_seconds": self.skew_seconds(),
            "location": self.plan.get("location"),
            "copy_note": self.plan.get("copy_note"),
            "sources": [asdict(s) for s in self.sources.values()],
            "steps": [asdict(s) for s in self.steps],
        }
