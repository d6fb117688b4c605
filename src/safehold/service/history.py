"""The daemon's memory: job runs and small state values in one local SQLite database.

A run is recorded when it starts and again when it ends, so that a daemon killed in the
middle leaves a row with no end: on the next start ``close_unfinished`` marks it
``interrupted`` and the scheduler sees its slot as missed. ``state`` holds small JSON
values that must survive a restart (alert states, the last known recovery points, the
next part of the rotating check). WAL mode lets ``safehold jobs`` and ``safehold status``
read while the daemon writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["OUTCOMES", "JobHistory", "JobRun"]

OUTCOMES = ("running", "success", "partial", "failed", "interrupted", "cancelled")
"""``partial``: a backup made but some files unreadable (exit 3); ``interrupted``: the daemon
died or was stopped during the run; ``cancelled``: the run was cut by a graceful stop."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,           -- str(JobId): "sync/db full", "replicate main to s3://..."
    action TEXT NOT NULL,        -- backup, replicate, check, retention
    target TEXT NOT NULL,
    schedule TEXT NOT NULL,
    scheduled_for TEXT,          -- the nominal slot (ISO 8601 UTC); NULL for a triggered run
    attempt INTEGER NOT NULL DEFAULT 1,
    started TEXT NOT NULL,
    ended TEXT,
    outcome TEXT NOT NULL DEFAULT 'running',
    bytes_added INTEGER,
    snapshot TEXT,
    error TEXT,
    details TEXT                 -- the command's JSON summary, as it printed it
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    action: str
    target: str
    schedule: str
    scheduled_for: datetime | None
    attempt: int
    started: datetime
    ended: datetime | None
    outcome: str
    bytes_added: int | None
    snapshot: str | None
    error: str | None
    details: dict[str, Any] | None

    @property
    def duration(self) -> float | None:
        return (self.ended - self.started).total_seconds() if self.ended else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job,
            "action": self.action,
            "target": self.target,
            "schedule": self.schedule,
            "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
            "attempt": self.attempt,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "duration_seconds": self.duration,
            "outcome": self.outcome,
            "bytes_added": self.bytes_added,
            "snapshot": self.snapshot,
            "error": self.error,
        }


def _run(row: sqlite3.Row) -> JobRun:
    return JobRun(
        id=row["id"],
        job=row["job"],
        action=row["action"],
        target=row["target"],
        schedule=row["schedule"],
        scheduled_for=_time(row["scheduled_for"]),
        attempt=row["attempt"],
        started=datetime.fromisoformat(row["started"]),
        ended=_time(row["ended"]),
        outcome=row["outcome"],
        bytes_added=row["bytes_added"],
        snapshot=row["snapshot"],
        error=row["error"],
        details=json.loads(row["details"]) if row["details"] else None,
    )


class JobHistory:
    """One SQLite file; safe to share between the daemon's threads."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._mutex = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, self._db:
            yield self._db

    # -- runs -----------------------------------------------------------------------

    def start(
        self,
        job: str,
        action: str,
        target: str,
        schedule: str,
        scheduled_for: datetime | None,
        attempt: int = 1,
        now: datetime | None = None,
    ) -> int:
        """Record a run as started; returns its id for ``finish``."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO runs (job, action, target, schedule, scheduled_for, attempt, started)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job,
                    action,
                    target,
                    schedule,
                    _iso(scheduled_for) if scheduled_for else None,
                    attempt,
                    _iso(now or datetime.now(UTC)),
                ),
            )
            return int(cursor.lastrowid or 0)

    def finish(
        self,
        run_id: int,
        outcome: str,
        *,
        bytes_added: int | None = None,
        snapshot: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        if outcome not in OUTCOMES or outcome == "running":
            raise ValueError(f"not a final outcome: {outcome!r}")
        with self._write() as db:
            db.execute(
                "UPDATE runs SET ended = ?, outcome = ?, bytes_added = ?, snapshot = ?,"
                " error = ?, details = ? WHERE id = ?",
                (
                    _iso(now or datetime.now(UTC)),
                    outcome,
                    bytes_added,
                    snapshot,
                    error,
                    json.dumps(details) if details is not None else None,
                    run_id,
                ),
            )

    def close_unfinished(self, now: datetime | None = None) -> list[JobRun]:
        """Mark runs a dead daemon left open as ``interrupted``; returns them."""
        with self._write() as db:
            rows = db.execute("SELECT * FROM runs WHERE outcome = 'running'").fetchall()
            db.execute(
                "UPDATE runs SET outcome = 'interrupted', ended = ?,"
                " error = 'the daemon stopped during this run' WHERE outcome = 'running'",
                (_iso(now or datetime.now(UTC)),),
            )
        return [_run(row) for row in rows]

    def runs(
        self,
        limit: int = 50,
        job: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
    ) -> list[JobRun]:
        """The newest runs first, optionally of one job, action or outcome."""
        where, args = [], []
        for column, value in (("job", job), ("action", action), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT * FROM runs{clause} ORDER BY id DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [_run(row) for row in rows]

    def successes_since(self, action: str, target_prefix: str, since: datetime) -> list[JobRun]:
        """Runs of ``action`` on targets starting with ``target_prefix`` that made their
        snapshot (success or partial) and ended at or after ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE action = ? AND substr(target, 1, ?) = ? AND outcome IN"
            " ('success', 'partial') AND ended >= ? ORDER BY ended",
            (action, len(target_prefix), target_prefix, _iso(since)),
        ).fetchall()
        return [_run(row) for row in rows]

    def targets_done(self, action: str) -> set[str]:
        """The targets of ``action`` with at least one successful (or partial) run."""
        rows = self._db.execute(
            "SELECT DISTINCT target FROM runs WHERE action = ? AND outcome IN"
            " ('success', 'partial')",
            (action,),
        )
        return {target for (target,) in rows}

    def get(self, run_id: int) -> JobRun:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return _run(row)

    def last(self, job: str, outcomes: tuple[str, ...] | None = None) -> JobRun | None:
        """The newest run of ``job`` (with one of ``outcomes``, when given)."""
        sql = "SELECT * FROM runs WHERE job = ?"
        args: list[Any] = [job]
        if outcomes:
            sql += f" AND outcome IN ({', '.join('?' * len(outcomes))})"
            args += outcomes
        row = self._db.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _run(row) if row else None

    def last_done_slot(self, job: str, retries: int) -> datetime | None:
        """The newest slot of ``job`` that is settled: a run succeeded, or failed on its last
        attempt. A slot whose run was interrupted, cancelled or still had retries left when
        the daemon stopped is not settled, and is caught up."""
        row = self._db.execute(
            "SELECT MAX(scheduled_for) FROM runs WHERE job = ? AND (outcome IN"
            " ('success', 'partial') OR (outcome = 'failed' AND attempt > ?))",
            (job, retries),
        ).fetchone()
        return _time(row[0]) if row else None

    def failures_since_success(self, job: str) -> list[JobRun]:
        """Failed runs of ``job`` after its last success, oldest first."""
        last_ok = self.last(job, ("success", "partial"))
        rows = self._db.execute(
            "SELECT * FROM runs WHERE job = ? AND outcome = 'failed' AND id > ? ORDER BY id",
            (job, last_ok.id if last_ok else 0),
        ).fetchall()
        return [_run(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """(job, outcome) → number of runs: the counters behind the metrics."""
        rows = self._db.execute("SELECT job, outcome, COUNT(*) FROM runs GROUP BY job, outcome")
        return {(job, outcome): n for job, outcome, n in rows}

    # -- state ----------------------------------------------------------------------

    def get_state(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_state(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
