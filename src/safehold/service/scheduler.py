"""When each job runs: nominal slots from the cron schedules, jitter, catch-up, retries.

Pure bookkeeping with no threads and no processes, so that it can be tested against a
clock the test moves. The slots come from ``dr.schedule.cron_times``, the same function
``safehold plan`` uses, so the two cannot disagree about the next run.

A job has at most one pending run: a slot that comes while the previous one still waits
or runs is merged into it (a backup that overruns its interval runs once more after it,
not many times). After a restart each job's newest slot before now is caught up once when
no settled run (success, or failure on its last attempt) covers it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId, cron_previous, cron_times, scheduled_jobs
from safehold.service.history import JobHistory

__all__ = ["FIRST_BACKUP", "PendingRun", "Scheduler"]

FIRST_BACKUP = "first backup"  # the reason of a never-backed-up source's first run

MAX_RETRY_DELAY = timedelta(hours=1)


@dataclass(frozen=True)
class PendingRun:
    job: JobId
    slot: datetime | None  # the nominal time it stands for; None when triggered
    not_before: datetime  # slot + jitter, or when a retry is due
    reason: str  # "schedule", "catch-up", "after backup", "retry"
    attempt: int = 1


class Scheduler:
    """The next slot of every cron job and the queue of runs waiting to start."""

    def __init__(self, policy: Policy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.specs: dict[JobId, str] = dict(scheduled_jobs(policy))
        self.next_slot: dict[JobId, datetime] = {}
        self.pending: dict[JobId, PendingRun] = {}
        self._rng = rng or random.Random()
        self._tz = policy.daemon.timezone

    # -- slots ----------------------------------------------------------------------

    def start(self, now: datetime, history: JobHistory, first_started: datetime) -> list[JobId]:
        """Set each job's next slot after ``now`` and queue the catch-up runs; returns the
        jobs caught up. A source that has never been backed up gets its first backup now
        (its first schedule: a database's full) rather than at its first slot, which may be
        a day away."""
        caught_up = []
        retries = self.policy.daemon.retries
        for job in self._never_backed_up(history):
            self._queue(PendingRun(job, None, now, FIRST_BACKUP))
        for job, spec in self.specs.items():
            self.next_slot[job] = cron_times(spec, now, 1, self._tz)[0]
            missed = cron_previous(spec, now, self._tz)
            settled = history.last_done_slot(str(job), retries)
            if missed > max(first_started, settled or first_started):
                self._queue(PendingRun(job, missed, now, "catch-up"))
                caught_up.append(job)
        return caught_up

    def _never_backed_up(self, history: JobHistory) -> list[JobId]:
        """The first backup job of each source with no successful run of any of its jobs."""
        firsts: dict[str, JobId] = {}
        for job in sorted(self.specs):
            if job.action == "backup" and job.schedule != "logs":
                firsts.setdefault(job.target, job)
        done = history.targets_done("backup")
        return [job for target, job in firsts.items() if target not in done]

    def advance(self, now: datetime) -> list[PendingRun]:
        """Queue every job whose slot has come; returns the runs queued."""
        queued = []
        for job, slot in self.next_slot.items():
            if slot > now:
                continue
            run = PendingRun(job, slot, slot + self._jitter(), "schedule")
            self._queue(run)
            queued.append(run)
            self.next_slot[job] = cron_times(self.specs[job], now, 1, self._tz)[0]
        return queued

    def _jitter(self) -> timedelta:
        jitter = self.policy.daemon.jitter.total_seconds()
        return timedelta(seconds=self._rng.uniform(0, jitter)) if jitter else timedelta(0)

    def _queue(self, run: PendingRun) -> None:
        waiting = self.pending.get(run.job)
        if waiting is None or waiting.reason == "retry":
            self.pending[run.job] = run
        elif run.slot is not None:  # merged: the newest slot, the earliest start
            self.pending[run.job] = replace(
                waiting, slot=run.slot, not_before=min(waiting.not_before, run.not_before)
            )

    # -- triggered runs and retries ---------------------------------------------------

    def trigger(self, job: JobId, now: datetime, reason: str) -> None:
        """Queue ``job`` now (replication after a backup), unless it already waits."""
        if job not in self.pending:
            self.pending[job] = PendingRun(job, None, now, reason)

    def retry(self, run: PendingRun, now: datetime) -> PendingRun | None:
        """Queue the next attempt of a failed run after an exponential delay, or None when
        its attempts are used up (or a newer slot already waits)."""
        if run.attempt > self.policy.daemon.retries or run.job in self.pending:
            return None
        delay = min(self.policy.daemon.retry_delay * 2 ** (run.attempt - 1), MAX_RETRY_DELAY)
        delay += timedelta(seconds=self._rng.uniform(0, delay.total_seconds() / 4))
        again = replace(run, not_before=now + delay, reason="retry", attempt=run.attempt + 1)
        self.pending[run.job] = again
        return again

    # -- what to start ------------------------------------------------------------------

    def ready(self, now: datetime) -> list[PendingRun]:
        """Pending runs whose time has come, oldest first."""
        return sorted(
            (run for run in self.pending.values() if run.not_before <= now),
            key=lambda run: (run.not_before, run.job),
        )

    def take(self, job: JobId) -> PendingRun:
        return self.pending.pop(job)

    def wake_at(self) -> datetime | None:
        """The next moment something is due: a slot or a pending run."""
        times = [*self.next_slot.values(), *(run.not_before for run in self.pending.values())]
        return min(times) if times else None
