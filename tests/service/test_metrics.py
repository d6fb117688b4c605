"""/metrics served over real HTTP on 127.0.0.1, scraped and parsed as Prometheus does,
from a real job history on disk and status objects built by hand."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from safehold.dr.load import parse_policy
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId
from safehold.dr.status import ProtectionStatus, ReplicaStatus, ServiceStatus, SourceStatus
from safehold.service.history import JobHistory
from safehold.service.metrics import (
    DaemonView,
    MetricsServer,
    SafeholdCollector,
    parse_listen,
    serve_metrics,
)
from safehold.service.supervisor import ArchiverState

POLICY = """
[repositories.main]
location = "/srv/backups/main"
password_env = "MAIN_PASSWORD"
[[repositories.main.replicas]]
location = "/srv/backups/copy"

[services.sync]
objectives.rpo = "15m"
[[services.sync.sources]]
name = "db"
kind = "postgres"
options.pgdata = "/var/lib/postgresql/15/main"
options.spool = "/var/lib/safehold/spool"
[[services.sync.sources]]
name = "config"
kind = "files"
options.paths = ["/etc/sync"]
"""

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FULL = "sync/db full"
CONFIG = "sync/config backup"
LOGS = JobId("backup", "sync/db", "logs")
FOLLOWER = JobId("replicate-logs", "main", "/srv/backups/copy")  # the replica's log follower

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: MetricsServer) -> Samples:
    """Every sample of /metrics as (name, labels) → value, parsed by prometheus_client."""
    with urllib.request.urlopen(server.url, timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def record(
    history: JobHistory,
    job: str,
    outcome: str,
    start: datetime,
    seconds: float,
    bytes_added: int | None = None,
    error: str | None = None,
) -> None:
    action, target, schedule = "backup", job.split()[0], job.split()[1]
    run = history.start(job, action, target, schedule, start, now=start)
    history.finish(
        run, outcome, bytes_added=bytes_added, error=error, now=start + timedelta(seconds=seconds)
    )


def status() -> ProtectionStatus:
    db = SourceStatus(
        "sync",
        "db",
        "postgres",
        timedelta(minutes=15),
        recovery_point=NOW - timedelta(minutes=3),
        exposure=timedelta(minutes=3),
        within_objective=True,
    )
    config = SourceStatus("sync", "config", "files", timedelta(minutes=15))  # never backed up
    service = ServiceStatus("sync", timedelta(minutes=15), timedelta(hours=1), [db, config])
    replica = ReplicaStatus(
        "main", "/srv/backups/copy", lag=timedelta(minutes=7), missing_objects=1, missing={"WAL": 1}
    )
    return ProtectionStatus(NOW, [service], [replica])


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[JobHistory]:
    history = JobHistory(tmp_path / "history.sqlite")
    yield history
    history.close()


def serve(view: DaemonView) -> MetricsServer:
    return serve_metrics("127.0.0.1:0", SafeholdCollector(view))


def test_jobs_archivers_and_status_are_scraped(policy: Policy, history: JobHistory) -> None:
    record(history, FULL, "success", NOW - timedelta(hours=3), 60, bytes_added=1000)
    record(history, FULL, "failed", NOW - timedelta(hours=2), 5, error="disk full")
    record(history, FULL, "success", NOW - timedelta(hours=1), 90, bytes_added=4096)
    record(history, CONFIG, "failed", NOW - timedelta(minutes=30), 2, error="denied")
    archiver = ArchiverState(up=True, restarts=2, since=NOW - timedelta(minutes=10))
    started = NOW - timedelta(days=1)
    states = {LOGS: archiver, FOLLOWER: ArchiverState(up=False, restarts=1, since=NOW)}
    view = DaemonView(policy, history, started, status, lambda: states)
    server = serve(view)
    try:
        samples = scrape(server)
    finally:
        server.close()

    assert value(samples, "safehold_daemon_up") == 1
    assert value(samples, "safehold_daemon_start_time_seconds") == started.timestamp()
    full = {
        "job_name": FULL,
        "action": "backup",
        "service": "sync",
        "source": "db",
        "schedule": "full",
    }
    ended = NOW - timedelta(hours=1) + timedelta(seconds=90)
    assert (
        value(samples, "safehold_job_last_success_timestamp_seconds", **full) == ended.timestamp()
    )
    assert value(samples, "safehold_job_last_run_duration_seconds", **full) == 90
    assert value(samples, "safehold_job_last_run_added_bytes", **full) == 4096
    assert value(samples, "safehold_job_last_run_success", **full) == 1
    assert value(samples, "safehold_job_runs_total", **full, outcome="success") == 2
    assert value(samples, "safehold_job_runs_total", **full, outcome="failed") == 1
    assert value(samples, "safehold_job_runs_total", **full, outcome="partial") == 0
    # a job that never succeeded has no last-success sample, and its last run failed
    assert value(samples, "safehold_job_last_success_timestamp_seconds", job_name=CONFIG) is None
    assert value(samples, "safehold_job_last_run_success", job_name=CONFIG) == 0
    assert value(samples, "safehold_job_runs_total", job_name=CONFIG, outcome="failed") == 1
    # a job of the policy that never ran: zero counters, no last-run samples
    incr = {"job_name": "sync/db incremental"}
    assert value(samples, "safehold_job_runs_total", **incr, outcome="success") == 0
    assert value(samples, "safehold_job_last_run_duration_seconds", **incr) is None
    # the after-backup replication and the repository jobs are there too
    replicate = {"job_name": "replicate main to /srv/backups/copy", "target": "main"}
    assert value(samples, "safehold_job_runs_total", **replicate, outcome="success") == 0
    assert value(samples, "safehold_job_runs_total", job_name="check main", outcome="failed") == 0
    follower = {"repository": "main", "replica": "/srv/backups/copy"}
    assert value(samples, "safehold_replica_log_follower_up", **follower) == 0
    assert value(samples, "safehold_archiver_up", job_name=str(FOLLOWER)) is None
    assert value(samples, "safehold_job_runs_total", job_name=str(FOLLOWER), outcome="failed") == 0

    logs = {"job_name": "sync/db logs", "service": "sync", "source": "db"}
    assert value(samples, "safehold_archiver_up", **logs) == 1
    assert value(samples, "safehold_archiver_restarts_total", **logs) == 2
    since = (NOW - timedelta(minutes=10)).timestamp()
    assert value(samples, "safehold_archiver_state_since_timestamp_seconds", **logs) == since

    db = {"service": "sync", "source": "db", "kind": "postgres"}
    assert value(samples, "safehold_source_rpo_exposure_seconds", **db) == 180
    assert value(samples, "safehold_source_rpo_objective_seconds", **db) == 900
    assert value(samples, "safehold_source_within_objective", **db) == 1
    point = (NOW - timedelta(minutes=3)).timestamp()
    assert value(samples, "safehold_source_recovery_point_timestamp_seconds", **db) == point
    # never backed up: no exposure sample (not a fake 0), and not within the objective
    config = {"service": "sync", "source": "config"}
    assert value(samples, "safehold_source_rpo_exposure_seconds", **config) is None
    assert value(samples, "safehold_source_within_objective", **config) == 0
    assert value(samples, "safehold_service_rpo_exposure_seconds", service="sync") is None
    assert value(samples, "safehold_service_within_objective", service="sync") == 0
    assert value(samples, "safehold_service_rpo_objective_seconds", service="sync") == 900
    assert value(samples, "safehold_service_rto_objective_seconds", service="sync") == 3600
    assert value(samples, "safehold_within_objectives") == 0
    assert value(samples, "safehold_status_timestamp_seconds") == NOW.timestamp()
    lag = {"repository": "main", "replica": "/srv/backups/copy"}
    assert value(samples, "safehold_replica_lag_seconds", **lag) == 420
    assert value(samples, "safehold_replica_missing_objects", **lag, kind="WAL") == 1
    assert value(samples, "safehold_replica_missing_objects", **lag, kind="packs") == 0


def test_each_scrape_reads_the_current_state(policy: Policy, history: JobHistory) -> None:
    """No stale values: what changed between two scrapes shows in the second."""
    current: dict[str, ProtectionStatus | None] = {"status": None}
    archivers = {LOGS: ArchiverState(True, 0, NOW)}
    view = DaemonView(policy, history, NOW, lambda: current["status"], lambda: dict(archivers))
    server = serve(view)
    try:
        first = scrape(server)
        assert value(first, "safehold_within_objectives") is None  # no status computed yet
        assert value(first, "safehold_job_runs_total", job_name=FULL, outcome="success") == 0

        record(history, FULL, "success", NOW, 10, bytes_added=1)
        current["status"] = status()
        archivers[LOGS] = ArchiverState(False, 1, NOW + timedelta(seconds=5))
        second = scrape(server)
    finally:
        server.close()
    assert value(second, "safehold_job_runs_total", job_name=FULL, outcome="success") == 1
    assert value(second, "safehold_within_objectives") == 0
    assert value(second, "safehold_archiver_up", job_name="sync/db logs") == 0
    assert value(second, "safehold_archiver_restarts_total", job_name="sync/db logs") == 1


def test_a_broken_status_leaves_the_other_metrics(policy: Policy, history: JobHistory) -> None:
    def broken() -> ProtectionStatus | None:
        raise RuntimeError("evaluate failed")

    server = serve(DaemonView(policy, history, NOW, broken, dict))
    try:
        samples = scrape(server)
    finally:
        server.close()
    assert value(samples, "safehold_daemon_up") == 1
    assert value(samples, "safehold_within_objectives") is None


def test_close_frees_the_port(policy: Policy, history: JobHistory) -> None:
    server = serve(DaemonView(policy, history, NOW, lambda: None, dict))
    port = server.port
    assert port > 0
    server.close()
    again = serve_metrics(
        f"127.0.0.1:{port}", SafeholdCollector(DaemonView(policy, history, NOW, lambda: None, dict))
    )
    try:
        assert again.port == port
        assert value(scrape(again), "safehold_daemon_up") == 1
    finally:
        again.close()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ValueError):
        parse_listen("9464")
