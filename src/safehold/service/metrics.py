"""The daemon's Prometheus metrics, computed from its live state at each scrape.

A custom collector reads the job history, the latest protection status and the archivers'
states when Prometheus asks, so no gauge can be left behind holding an old value (a job
removed from the policy, a source whose status is no longer known). The server runs on
its own registry, so nothing else in the process leaks into /metrics.

A source that was never backed up has no RPO exposure: its exposure sample is left out
(never a fake 0) and ``safehold_source_within_objective`` is 0. docs/daemon.md lists
every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from safehold.dr.jobs import archiver_jobs, log_replication_jobs, replica_after_backup
from safehold.dr.policy import Policy
from safehold.dr.schedule import LOG_REPLICATION, JobId, scheduled_jobs
from safehold.dr.status import ProtectionStatus
from safehold.ops.replica_lag import KIND_NAMES
from safehold.service.history import OUTCOMES, JobHistory, JobRun

__all__ = [
    "JOB_LABELS",
    "ArchiverState",
    "DaemonView",
    "MetricsServer",
    "SafeholdCollector",
    "parse_listen",
    "policy_jobs",
    "serve_metrics",
]

log = logging.getLogger(__name__)

JOB_LABELS: Final = ("job_name", "action", "target", "service", "source", "schedule")
"""``job_name``, not ``job``: Prometheus gives every scraped sample a ``job`` label of its
own (the scrape job) and would rename ours to ``exported_job``."""

_FINAL = tuple(outcome for outcome in OUTCOMES if outcome != "running")
_GOOD = ("success", "partial")  # a snapshot was made (history.failures_since_success agrees)
_JOB_GAUGES: Final = {
    "success": (
        "safehold_job_last_success_timestamp_seconds",
        "End of the last run that made its snapshot (success or partial).",
    ),
    "ended": (
        "safehold_job_last_run_timestamp_seconds",
        "End of the last finished run, whatever its outcome.",
    ),
    "ok": (
        "safehold_job_last_run_success",
        "1 if the last finished run succeeded (success or partial), else 0.",
    ),
    "duration": ("safehold_job_last_run_duration_seconds", "Duration of the last finished run."),
    "added": (
        "safehold_job_last_run_added_bytes",
        "Bytes the last finished run added to the repository.",
    ),
}


class ArchiverState(Protocol):
    """A continuous log archiver as the daemon's supervisor sees it (its
    ``supervisor.ArchiverState`` fits)."""

    @property
    def up(self) -> bool: ...
    @property
    def restarts(self) -> int: ...
    @property
    def since(self) -> datetime | None: ...  # when it last came up or went down


@dataclass
class DaemonView:
    """What the metrics read; the daemon fills it in once and updates nothing here:
    ``status`` and ``archivers`` are called at each scrape (from the server's thread)."""

    policy: Policy
    history: JobHistory
    started: datetime
    status: Callable[[], ProtectionStatus | None]
    archivers: Callable[[], Mapping[JobId, ArchiverState]]


def policy_jobs(policy: Policy) -> list[JobId]:
    """Every job the daemon runs for ``policy``: scheduled, continuous (archivers and log
    followers) and after-backup."""
    jobs = {job for job, _cron in scheduled_jobs(policy)}
    jobs.update(archiver_jobs(policy))
    jobs.update(log_replication_jobs(policy))
    for repo in policy.repositories:
        jobs.update(JobId("replicate", repo, loc) for loc in replica_after_backup(policy, repo))
    return sorted(jobs)


def _job_labels(job: JobId) -> list[str]:
    service, source = "", ""
    if job.action == "backup":
        service, _, source = job.target.partition("/")
    return [str(job), job.action, job.target, service, source, job.schedule]


def _seconds(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


class SafeholdCollector(Collector):
    """Yields every safehold metric from ``view`` at each ``collect``."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        for name, section in (
            ("daemon", self._daemon),
            ("jobs", self._jobs),
            ("archivers", self._archivers),
            ("status", self._status),
        ):
            try:  # one broken part (a locked history, a failed status) leaves the others
                yield from list(section())
            except Exception:
                log.exception("metrics: the %s metrics could not be read", name)

    def _daemon(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("safehold_daemon_up", "1 while the daemon serves metrics.")
        up.add_metric([], 1)
        start = GaugeMetricFamily(
            "safehold_daemon_start_time_seconds", "When the daemon started (Unix time)."
        )
        start.add_metric([], _seconds(self.view.started))
        return iter((up, start))

    def _jobs(self) -> Iterator[Metric]:
        gauges = {key: _gauge(name, text, JOB_LABELS) for key, (name, text) in _JOB_GAUGES.items()}
        runs = CounterMetricFamily(
            "safehold_job_runs", "Finished runs by outcome.", labels=(*JOB_LABELS, "outcome")
        )
        counts = self.view.history.counts()
        for job in policy_jobs(self.view.policy):
            labels = _job_labels(job)
            for outcome in _FINAL:
                runs.add_metric([*labels, outcome], counts.get((str(job), outcome), 0))
            good = self.view.history.last(str(job), _GOOD)
            if good is not None and good.ended is not None:
                gauges["success"].add_metric(labels, _seconds(good.ended))
            last = self.view.history.last(str(job), _FINAL)
            if last is not None:
                _last_run(last, labels, gauges)
        return iter((*gauges.values(), runs))

    def _status(self) -> Iterator[Metric]:
        status = self.view.status()
        return _status_metrics(status) if status is not None else iter(())

    def _archivers(self) -> Iterator[Metric]:
        labels = ("job_name", "service", "source")
        up = _gauge("safehold_archiver_up", "1 while the log archiver runs.", labels)
        since = _gauge(
            "safehold_archiver_state_since_timestamp_seconds",
            "When the archiver entered its current state.",
            labels,
        )
        restarts = CounterMetricFamily(
            "safehold_archiver_restarts", "Times the daemon restarted the archiver.", labels=labels
        )
        followers = _gauge(
            "safehold_replica_log_follower_up",
            "1 while the daemon's log follower copies new WAL and binlogs to the replica.",
            ("repository", "replica"),
        )
        states = self.view.archivers()
        for job in sorted(states):
            state = states[job]
            if job.action == LOG_REPLICATION:
                followers.add_metric([job.target, job.schedule], 1 if state.up else 0)
                continue
            service, _, source = job.target.partition("/")
            values = [str(job), service, source]
            up.add_metric(values, 1 if state.up else 0)
            restarts.add_metric(values, state.restarts)
            if state.since is not None:
                since.add_metric(values, _seconds(state.since))
        return iter((up, restarts, since, followers))


def _gauge(name: str, documentation: str, labels: tuple[str, ...]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _last_run(run: JobRun, labels: list[str], gauges: dict[str, GaugeMetricFamily]) -> None:
    if run.ended is not None:
        gauges["ended"].add_metric(labels, _seconds(run.ended))
    gauges["ok"].add_metric(labels, 1 if run.outcome in _GOOD else 0)
    if run.duration is not None:
        gauges["duration"].add_metric(labels, run.duration)
    if run.bytes_added is not None:
        gauges["added"].add_metric(labels, run.bytes_added)


def _status_metrics(status: ProtectionStatus) -> Iterator[Metric]:
    """Sources, services, replicas and the whole, as ``status`` last computed them."""
    src = ("service", "source", "kind")
    exposure = _gauge(
        "safehold_source_rpo_exposure_seconds",
        "Data that would be lost now:"
        " time since the newest recovery point (absent: never backed up).",
        src,
    )
    objective = _gauge("safehold_source_rpo_objective_seconds", "The source's RPO.", src)
    within = _gauge("safehold_source_within_objective", "1 if the exposure is within the RPO.", src)
    point = _gauge(
        "safehold_source_recovery_point_timestamp_seconds",
        "The newest moment that can be restored.",
        src,
    )
    for s in (source for service in status.services for source in service.sources):
        values = [s.service, s.source, s.kind]
        objective.add_metric(values, s.rpo.total_seconds())
        within.add_metric(values, 1 if s.within_objective else 0)
        if s.exposure is not None:
            exposure.add_metric(values, s.exposure.total_seconds())
        if s.recovery_point is not None:
            point.add_metric(values, _seconds(s.recovery_point))
    yield from (exposure, objective, within, point)
    yield from _service_metrics(status)
    yield from _drill_metrics(status)
    yield from _standby_metrics(status)
    yield from _replica_metrics(status)


def _drill_metrics(status: ProtectionStatus) -> Iterator[Metric]:
    """The last drill of each drilled service (absent: never drilled, or not measured)."""
    svc = ("service",)
    success = _gauge(
        "safehold_drill_last_success_timestamp_seconds", "When the last passing drill ended.", svc
    )
    rto = _gauge("safehold_drill_rto_seconds", "The last drill's achieved RTO.", svc)
    rpo = _gauge("safehold_drill_rpo_seconds", "The last drill's achieved RPO.", svc)
    passed = _gauge("safehold_drill_passed", "1 if the last drill passed.", svc)
    for service in status.services:
        drill = service.drill
        if drill is None:
            continue
        if drill["last_success"]:
            stamp = datetime.fromisoformat(drill["last_success"])
            success.add_metric([service.name], _seconds(stamp))
        last = drill["last"]
        if last is None:
            continue
        passed.add_metric([service.name], 1 if last["outcome"] == "passed" else 0)
        for gauge, key in ((rto, "rto_seconds"), (rpo, "rpo_seconds")):
            if last[key] is not None:
                gauge.add_metric([service.name], float(last[key]))
    yield from (success, rto, rpo, passed)


def _standby_metrics(status: ProtectionStatus) -> Iterator[Metric]:
    """Each hot standby as its Patroni nodes report it (docs/standby.md)."""
    svc, node = ("service",), ("service", "node")
    primary_up = _gauge(
        "safehold_standby_primary_up", "1 if exactly one node is a running primary.", svc
    )
    healthy = _gauge(
        "safehold_standby_healthy_replicas", "Replicas streaming from the primary.", svc
    )
    problems = _gauge("safehold_standby_problems", "The standby's problems (0: healthy).", svc)
    up = _gauge("safehold_standby_node_up", "1 if the node's Patroni REST API answers.", node)
    lag_bytes = _gauge(
        "safehold_standby_replica_lag_bytes", "WAL bytes the replica has yet to replay.", node
    )
    lag_seconds = _gauge(
        "safehold_standby_replica_lag_seconds", "Age of the last commit it replayed.", node
    )
    for service in status.services:
        standby = service.standby
        if standby is None:
            continue
        name = service.name
        problems.add_metric([name], len(standby.problems))
        if not standby.nodes:
            continue  # an application pair alone: _standby_app_metrics
        primary_up.add_metric([name], 0 if standby.primary is None else 1)
        streaming = [n for n in standby.nodes if n.name != standby.primary and n.streaming]
        healthy.add_metric([name], len(streaming))
        for n in standby.nodes:
            up.add_metric([name, n.name], 1 if n.reachable else 0)
            if n.lag_bytes is not None:
                lag_bytes.add_metric([name, n.name], n.lag_bytes)
            if n.lag_seconds is not None:
                lag_seconds.add_metric([name, n.name], n.lag_seconds)
    yield from (primary_up, healthy, problems, up, lag_bytes, lag_seconds)
    yield from _standby_app_metrics(status)


def _standby_app_metrics(status: ProtectionStatus) -> Iterator[Metric]:
    """Each application pair: every instance's health check, the one HAProxy serves from."""
    labels = ("service", "instance", "role")
    up = _gauge(
        "safehold_standby_app_instance_up", "1 if the instance's health check passes.", labels
    )
    serving = _gauge(
        "safehold_standby_app_serving", "1 for the instance HAProxy sends requests to.", labels
    )
    for service in status.services:
        app = service.standby.app if service.standby is not None else None
        if app is None:
            continue
        for i in app.instances:
            up.add_metric([service.name, i.name, i.role], 1 if i.healthy else 0)
            serving.add_metric([service.name, i.name, i.role], 1 if i.name == app.serving else 0)
    yield from (up, serving)


def _service_metrics(status: ProtectionStatus) -> Iterator[Metric]:
    svc = ("service",)
    exposure = _gauge(
        "safehold_service_rpo_exposure_seconds",
        "The worst exposure of the service's sources (absent: one was never backed up).",
        svc,
    )
    rpo = _gauge("safehold_service_rpo_objective_seconds", "The service's RPO.", svc)
    rto = _gauge("safehold_service_rto_objective_seconds", "The service's RTO.", svc)
    within = _gauge(
        "safehold_service_within_objective",
        "1 if every source of the service is within its RPO.",
        svc,
    )
    for service in status.services:
        rpo.add_metric([service.name], service.rpo.total_seconds())
        rto.add_metric([service.name], service.rto.total_seconds())
        within.add_metric([service.name], 1 if service.within_objectives else 0)
        if service.exposure is not None:
            exposure.add_metric([service.name], service.exposure.total_seconds())
    whole = GaugeMetricFamily("safehold_within_objectives", "1 if every service is within.")
    whole.add_metric([], 1 if status.within_objectives else 0)
    computed = GaugeMetricFamily(
        "safehold_status_timestamp_seconds", "When the protection status was last computed."
    )
    computed.add_metric([], _seconds(status.now))
    yield from (exposure, rpo, rto, within, whole, computed)


def _replica_metrics(status: ProtectionStatus) -> Iterator[Metric]:
    labels = ("repository", "replica")
    lag = _gauge(
        "safehold_replica_lag_seconds",
        "Age of the oldest point the primary can restore and the replica cannot"
        " (0: the replica restores everything the primary does).",
        labels,
    )
    missing = _gauge(
        "safehold_replica_missing_objects",
        "Objects of the primary the replica lacks, by kind (packs, WAL, binlogs, index...).",
        (*labels, "kind"),
    )
    for replica in status.replicas:
        values = [replica.repository, replica.location]
        if replica.lag is not None:
            lag.add_metric(values, replica.lag.total_seconds())
        if replica.missing_objects is not None:
            for kind in KIND_NAMES.values():
                missing.add_metric([*values, kind], replica.missing.get(kind, 0))
    yield from (lag, missing)


# -- the HTTP server ---------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) → (host, port)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class MetricsServer:
    """A running /metrics endpoint; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, listen: str, collector: Collector) -> None:
        host, port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port: int = self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(listen: str, collector: Collector) -> MetricsServer:
    """Serve ``collector`` on ``listen`` (``HOST:PORT``) until ``close()``."""
    return MetricsServer(listen, collector)
