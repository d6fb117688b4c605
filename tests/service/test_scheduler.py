"""The scheduler against a clock the test moves: slots, catch-up once, merging, retries,
and agreement with ``safehold plan`` on the next run times."""

from __future__ import annotations

import random
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.dr.load import parse_policy
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId, next_runs
from safehold.service.history import JobHistory
from safehold.service.scheduler import Scheduler

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
BACKUP = JobId("backup", "app/files", "backup")


def policy(
    backup: str = "0 * * * *", daemon: str = "", check: str = "off", retention: str = "off"
) -> Policy:
    """A policy with one files source; ``daemon`` holds extra lines of its [daemon] table."""
    text = textwrap.dedent(
        f"""
        [repositories.main]
        location = "/tmp/none"
        password_env = "PW"
        [services.app]
        [[services.app.sources]]
        name = "files"
        kind = "files"
        options.paths = ["/srv"]
        schedules.backup = "{backup}"
        [daemon]
        {daemon}
        [daemon.check]
        schedule = "{check}"
        [daemon.retention]
        schedule = "{retention}"
        """
    )
    return parse_policy(text, "safehold.toml")


def history(tmp_path: Path, fresh: bool = False) -> JobHistory:
    """A job history in which the source was backed up once, a day before T0 (``fresh``:
    never)."""
    h = JobHistory(tmp_path / "history.sqlite")
    if not fresh:
        record(h, BACKUP, T0 - timedelta(days=1), "success")
    return h


def record(h: JobHistory, job: JobId, slot: datetime, outcome: str, attempt: int = 1) -> None:
    run_id = h.start(str(job), job.action, job.target, job.schedule, slot, attempt, now=slot)
    if outcome != "running":
        h.finish(run_id, outcome, now=slot + timedelta(seconds=5))


def test_slots_come_on_schedule(tmp_path: Path) -> None:
    s = Scheduler(policy())
    assert s.start(T0 + timedelta(minutes=5), history(tmp_path), T0) == []
    assert s.next_slot[BACKUP] == T0 + timedelta(hours=1)
    assert s.advance(T0 + timedelta(minutes=59)) == []
    queued = s.advance(T0 + timedelta(hours=1, seconds=1))
    assert [(r.job, r.slot, r.reason) for r in queued] == [
        (BACKUP, T0 + timedelta(hours=1), "schedule")
    ]
    assert s.next_slot[BACKUP] == T0 + timedelta(hours=2)
    assert s.wake_at() == T0 + timedelta(hours=1)  # the pending run is due now


def test_missed_slots_are_caught_up_once(tmp_path: Path) -> None:
    """Down from 12:30 to 15:10: the 13:00, 14:00 and 15:00 slots were missed; one run."""
    h = history(tmp_path)
    record(h, BACKUP, T0, "success")
    s = Scheduler(policy())
    now = T0 + timedelta(hours=3, minutes=10)
    assert s.start(now, h, T0 - timedelta(days=1)) == [BACKUP]
    assert [(r.slot, r.reason) for r in s.ready(now)] == [(T0 + timedelta(hours=3), "catch-up")]
    assert s.next_slot[BACKUP] == T0 + timedelta(hours=4)


def test_settled_slot_is_not_caught_up(tmp_path: Path) -> None:
    h = history(tmp_path)
    record(h, BACKUP, T0, "success")
    assert Scheduler(policy()).start(T0 + timedelta(minutes=30), h, T0) == []
    record(h, BACKUP, T0 + timedelta(hours=1), "failed", attempt=4)  # retries used up
    assert Scheduler(policy()).start(T0 + timedelta(hours=1, minutes=30), h, T0) == []


def test_interrupted_or_unretried_slot_is_caught_up(tmp_path: Path) -> None:
    h = history(tmp_path)
    record(h, BACKUP, T0, "running")  # the daemon died during this run
    h.close_unfinished(T0 + timedelta(minutes=1))
    assert Scheduler(policy()).start(T0 + timedelta(minutes=2), h, T0 - timedelta(days=1)) == [
        BACKUP
    ]
    h2 = history(tmp_path / "b")
    record(h2, BACKUP, T0, "failed", attempt=1)  # died while waiting to retry
    assert Scheduler(policy()).start(T0 + timedelta(minutes=2), h2, T0 - timedelta(days=1)) == [
        BACKUP
    ]


def test_first_start_catches_nothing_up_but_backs_up_a_new_source_at_once(
    tmp_path: Path,
) -> None:
    h = history(tmp_path, fresh=True)
    s = Scheduler(policy())
    assert s.start(T0 + timedelta(minutes=30), h, T0) == []
    assert [(r.job, r.slot, r.reason) for r in s.ready(T0 + timedelta(minutes=30))] == [
        (BACKUP, None, "first backup")
    ]
    record(h, BACKUP, T0 + timedelta(minutes=30), "success")
    again = Scheduler(policy())
    again.start(T0 + timedelta(minutes=40), h, T0)
    assert again.pending == {}


def test_a_new_database_gets_a_full_backup_first(tmp_path: Path) -> None:
    p = parse_policy(
        textwrap.dedent(
            """
            [repositories.main]
            location = "/tmp/none"
            password_env = "PW"
            [services.app]
            [[services.app.sources]]
            name = "db"
            kind = "postgres"
            options.pgdata = "/pg"
            """
        )
    )
    s = Scheduler(p)
    s.start(T0, history(tmp_path, fresh=True), T0)
    assert [r.job for r in s.ready(T0)] == [JobId("backup", "app/db", "full")]


def test_a_slot_during_a_waiting_run_merges_into_it(tmp_path: Path) -> None:
    s = Scheduler(policy("*/10 * * * * *"))
    s.start(T0, history(tmp_path), T0)
    s.advance(T0 + timedelta(seconds=10))
    s.advance(T0 + timedelta(seconds=20))
    s.advance(T0 + timedelta(seconds=30))
    assert len(s.pending) == 1
    run = s.pending[BACKUP]
    assert run.slot == T0 + timedelta(seconds=30)
    assert run.not_before == T0 + timedelta(seconds=10)


def test_jitter_delays_within_its_bound(tmp_path: Path) -> None:
    p = policy(daemon='jitter = "2m"')
    s = Scheduler(p, random.Random(7))
    s.start(T0, history(tmp_path), T0)
    delays = []
    for hour in range(1, 30):
        (run,) = s.advance(T0 + timedelta(hours=hour))
        delays.append(run.not_before - run.slot)  # type: ignore[operator]
        s.take(BACKUP)
    assert all(timedelta(0) <= d <= timedelta(minutes=2) for d in delays)
    assert len(set(delays)) > 20


def test_retries_back_off_then_stop(tmp_path: Path) -> None:
    p = policy(daemon='retries = 3\n        retry_delay = "10s"')
    s = Scheduler(p, random.Random(1))
    s.start(T0, history(tmp_path), T0)
    (run,) = s.advance(T0 + timedelta(hours=1))
    s.take(BACKUP)
    now = T0 + timedelta(hours=1)
    delays = []
    for _ in range(3):
        again = s.retry(run, now)
        assert again is not None
        delays.append((again.not_before - now).total_seconds())
        run = s.take(BACKUP)
    assert s.retry(run, now) is None  # attempts 1 + 3 retries used
    assert run.attempt == 4
    assert 10 <= delays[0] <= 12.5 and 20 <= delays[1] <= 25 and 40 <= delays[2] <= 50


def test_triggered_run_waits_once(tmp_path: Path) -> None:
    s = Scheduler(policy())
    s.start(T0, history(tmp_path), T0)
    job = JobId("replicate", "main", "/elsewhere")
    s.trigger(job, T0, "after backup")
    s.trigger(job, T0 + timedelta(seconds=1), "after backup")
    assert [r.job for r in s.ready(T0 + timedelta(seconds=1))] == [job]


CRONS = st.sampled_from(
    [
        "0 * * * *",
        "*/7 * * * *",
        "15 3 * * 1-5",
        "0 2 1 * *",
        "*/5 * * * * *",
        "30 */6 * * *",
        "@daily",
        "0 0 29 2 *",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    backup=CRONS,
    check=CRONS,
    offset=st.integers(min_value=0, max_value=400 * 86400),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
)
def test_plan_and_daemon_agree_on_next_runs(backup: str, check: str, offset: int, tz: str) -> None:
    """The daemon's next slot of every job is the first time ``safehold plan`` lists."""
    p = policy(backup, daemon=f'timezone = "{tz}"', check=check, retention="30 3 * * *")
    now = T0 + timedelta(seconds=offset)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        s = Scheduler(p)
        s.start(now, JobHistory(Path(tmp) / "h.sqlite"), now)
    planned = {job: times[0] for job, times in next_runs(p, now, 1).items()}
    assert s.next_slot == planned
