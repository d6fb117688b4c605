"""Alerts: tell someone when a job keeps failing or a service falls outside its RPO, and
again when it is fixed.

The daemon tells the ``Alerter`` about each finished run (final outcomes only: retries are
the daemon's business) and each new protection status. An alert opens once ("firing") and
closes once ("resolved"); the open alerts and the events not yet delivered live in the job
history's state table, so a restarted daemon neither sends an alert again nor forgets one.

Delivery runs on one background thread fed by a queue, so the scheduler never waits for a
slow endpoint: webhooks get the event as a JSON POST (stdlib urllib), apprise (optional:
email, chat, ...) gets its title and message. Each delivery is retried with growing
delays; a failure is logged and never raised. docs/daemon.md describes the document.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shlex
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any, Final

from safehold.dr.policy import AlertSettings, Webhook
from safehold.dr.status import ProtectionStatus, ServiceStatus, SourceStatus
from safehold.errors import InvalidArgument
from safehold.service.history import JobHistory, JobRun

__all__ = [
    "FIRING",
    "RESOLVED",
    "AlertEvent",
    "Alerter",
    "AppriseTarget",
    "Target",
    "WebhookTarget",
]

log = logging.getLogger(__name__)

FIRING: Final = "firing"
RESOLVED: Final = "resolved"
JOB_FAILED: Final = "job_failed"
RPO_EXCEEDED: Final = "rpo_exceeded"
DRILL_PROBLEM: Final = "drill_problem"
STANDBY_PROBLEM: Final = "standby_problem"
OPEN_KEY: Final = "alerts.open"  # history state: alert key → what was sent when it opened
OUTBOX_KEY: Final = "alerts.outbox"  # history state: events queued but not yet delivered
DEFAULT_RETRY_DELAYS: Final = (2.0, 10.0, 30.0)

_FAILING = ("failed", "partial")  # partial: a snapshot, but files were left out (exit 3)
_SUCCEEDED = ("success",)


@dataclass(frozen=True)
class AlertEvent:
    """One notification: an alert opening (firing) or closing (resolved)."""

    status: str  # firing | resolved
    alert: str  # job_failed | rpo_exceeded
    key: str  # "job_failed:sync/db full", "rpo_exceeded:sync": one alert, both its events
    subject: str  # the job or the service
    title: str
    message: str  # several lines, for people
    since: datetime  # when the problem began
    time: datetime  # when this event happened
    error: str | None  # the error line, when there is one
    command: str  # the command that shows more
    labels: dict[str, str] = field(default_factory=dict)
    host: str = field(default_factory=socket.gethostname)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # for receivers to drop repeats

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["since"] = self.since.isoformat()
        document["time"] = self.time.isoformat()
        return {"version": 1, "source": "safehold", **document}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> AlertEvent:
        values = {k: v for k, v in document.items() if k not in ("version", "source")}
        values["since"] = datetime.fromisoformat(values["since"])
        values["time"] = datetime.fromisoformat(values["time"])
        return cls(**values)


# -- delivery targets --------------------------------------------------------------------


class Target:
    """Somewhere events go; ``send`` raises on failure (the worker retries and logs)."""

    name = "target"

    def send(self, event: AlertEvent) -> None:
        raise NotImplementedError


class WebhookTarget(Target):
    """The event's JSON document, POSTed; the URL is read at each send, so a rotated
    ``url_file`` takes effect without a restart."""

    def __init__(self, webhook: Webhook) -> None:
        self.webhook = webhook
        source = webhook.url_file or (f"${webhook.url_env}" if webhook.url_env else None)
        self.name = f"webhook {source or _redacted(webhook.url or '')}"

    def url(self) -> str:
        if self.webhook.url is not None:
            return self.webhook.url
        if self.webhook.url_file is not None:
            return Path(self.webhook.url_file).read_text().strip()
        value = os.environ.get(self.webhook.url_env or "")
        if not value:
            raise InvalidArgument(f"the environment variable {self.webhook.url_env} is not set")
        return value

    def send(self, event: AlertEvent) -> None:
        body = json.dumps(event.to_dict()).encode()
        request = urllib.request.Request(
            self.url(),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "safehold"},
        )
        timeout = self.webhook.timeout.total_seconds()
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect fails the delivery (HTTP 30x in the log): urllib would follow it with
    a GET that drops the document, and report success."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> None:
        del req, fp, code, msg, headers, newurl


_OPENER = urllib.request.build_opener(_NoRedirect)


def _redacted(url: str) -> str:
    """Scheme and host only: the path or query of a webhook URL often holds its token."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


class AppriseTarget(Target):
    """apprise's services (email, chat, ...) from its own configuration file, which keeps
    their credentials out of the policy."""

    def __init__(self, config_path: str) -> None:
        try:
            import apprise
        except ImportError:
            raise InvalidArgument(
                "[daemon.alerts] apprise_config is set but the apprise package is not"
                " installed: pip install 'safehold[alerts]'"
            ) from None
        self._apprise = apprise
        self.config_path = config_path
        self.name = f"apprise {config_path}"

    def send(self, event: AlertEvent) -> None:
        apprise = self._apprise
        config = apprise.AppriseConfig()
        config.add(self.config_path)  # read at each send: edits apply without a restart
        notifier = apprise.Apprise()
        notifier.add(config)
        kind = apprise.NotifyType.FAILURE if event.status == FIRING else apprise.NotifyType.SUCCESS
        if not notifier.notify(body=event.message, title=event.title, notify_type=kind):
            raise OSError(f"apprise could not notify (configuration {self.config_path})")


def targets_of(settings: AlertSettings) -> list[Target]:
    """The delivery targets the policy names."""
    targets: list[Target] = [WebhookTarget(webhook) for webhook in settings.webhooks]
    if settings.apprise_config is not None:
        targets.append(AppriseTarget(str(settings.apprise_config)))
    return targets


# -- wording -----------------------------------------------------------------------------


def _duration(span: timedelta) -> str:
    """``1h02m``, ``42m``, ``30s``: how long, for people."""
    seconds = max(0, int(span.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _error_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None  # the last line of a stderr tail says what failed


def _source_line(source: SourceStatus) -> str:
    name = f"{source.service}/{source.source}"
    if source.exposure is None:
        line = f"{name}: never backed up"
    else:
        point = f", recovery point {_when(source.recovery_point)}" if source.recovery_point else ""
        line = f"{name}: {_duration(source.exposure)} of data at risk{point}"
    problem = source.problem or source.last_error
    return f"{line} ({problem})" if problem else line


def _breach_start(service: ServiceStatus, now: datetime) -> datetime:
    """When the service left its objective: the earliest moment an outside source's
    exposure passed its RPO (now, when a source has no recovery point at all)."""
    moments = [
        source.recovery_point + source.rpo if source.recovery_point is not None else now
        for source in service.sources
        if source.breached
    ]
    return min(moments, default=now)


# -- the alerter -------------------------------------------------------------------------


class Alerter:
    """Opens and closes alerts from job runs and protection statuses; delivers them in
    the background. ``close()`` before the history is closed."""

    def __init__(
        self,
        settings: AlertSettings,
        history: JobHistory,
        config_path: str | os.PathLike[str],
        *,
        targets: Sequence[Target] | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.history = history
        self.config_path = os.fspath(config_path)
        self.targets = list(targets) if targets is not None else targets_of(settings)
        self.retry_delays = tuple(retry_delays)
        self.clock = clock
        self._lock = threading.Lock()  # guards _open and _outbox (the worker shares them)
        self._decide = threading.Lock()  # one decision at a time: each alert opens once
        self._open: dict[str, dict[str, Any]] = history.get_state(OPEN_KEY) or {}
        self._outbox: list[dict[str, Any]] = history.get_state(OUTBOX_KEY) or []
        self._queue: queue.Queue[AlertEvent | None] = queue.Queue()
        self._abandon = threading.Event()
        self._worker = threading.Thread(target=self._deliver_all, name="alerts", daemon=True)
        for document in self._outbox:  # left undelivered by the previous daemon
            self._queue.put(AlertEvent.from_dict(document))
        self._worker.start()

    # -- what the daemon calls ---------------------------------------------------------

    def job_finished(self, run: JobRun) -> None:
        """A run's final outcome (after the daemon's retries): failed or partial opens the
        job's alert, success closes it; interrupted and cancelled change nothing."""
        key = f"{JOB_FAILED}:{run.job}"
        with self._decide:
            if run.outcome in _FAILING and key not in self._open:
                self._fire(self._job_failed(key, run))
            elif run.outcome in _SUCCEEDED and key in self._open:
                self._resolve(key, self._job_resolved(key, run))

    def status_computed(self, status: ProtectionStatus) -> None:
        """A new protection status: a service outside its RPO opens its alert, one back
        within closes it; an open alert of a service no longer in the policy closes."""
        with self._decide:
            self._services(status)

    def _services(self, status: ProtectionStatus) -> None:
        seen = set()
        for service in status.services:
            key = f"{RPO_EXCEEDED}:{service.name}"
            seen.add(key)
            if not service.within_objectives and key not in self._open:
                self._fire(self._rpo_exceeded(key, service, status.now))
            elif service.within_objectives and key in self._open:
                self._resolve(key, self._rpo_resolved(key, service, status.now, "back within"))
        for key in [k for k in self._open if k.startswith(f"{RPO_EXCEEDED}:") and k not in seen]:
            gone = ServiceStatus(key.partition(":")[2], timedelta(0), timedelta(0))
            self._resolve(key, self._rpo_resolved(key, gone, status.now, "no longer in the policy"))
        for service in status.services:
            key = f"{DRILL_PROBLEM}:{service.name}"
            if service.drill_problem is not None and key not in self._open:
                self._fire(self._drill_event(key, service, status.now, status.now))
            elif service.drill_problem is None and key in self._open:
                since = datetime.fromisoformat(self._open[key]["since"])
                self._resolve(key, self._drill_event(key, service, status.now, since))
            self._standby_alert(service, status.now)

    def _standby_alert(self, service: ServiceStatus, now: datetime) -> None:
        """One alert while the service's hot standby has problems, resolved when it has none
        (a service without a standby table has none to raise)."""
        key = f"{STANDBY_PROBLEM}:{service.name}"
        problems = service.standby.problems if service.standby is not None else []
        if problems and key not in self._open:
            self._fire(self._standby_event(key, service.name, problems, now, now))
        elif not problems and key in self._open:
            since = datetime.fromisoformat(self._open[key]["since"])
            self._resolve(key, self._standby_event(key, service.name, [], now, since))

    def open_alerts(self) -> dict[str, dict[str, Any]]:
        """Open alerts by key, as stored (``safehold status`` may show them)."""
        with self._lock:
            return {key: dict(value) for key, value in self._open.items()}

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued, waiting at most ``timeout`` seconds; True when all was
        delivered. What is left stays in the outbox for the next start."""
        self._queue.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            self._abandon.set()  # stop retrying; the worker ends after its current attempt
            self._worker.join(max([5.0, *(t.total_seconds() for t in self._timeouts())]))
        with self._lock:
            return not self._outbox

    # -- opening and closing -------------------------------------------------------------

    def _fire(self, event: AlertEvent) -> None:
        stored = {"alert": event.alert, "subject": event.subject, "since": event.since.isoformat()}
        with self._lock:
            self._open[event.key] = {**stored, "error": event.error, "labels": event.labels}
            self._persist_open()
        self._enqueue(event)

    def _resolve(self, key: str, event: AlertEvent) -> None:
        with self._lock:
            self._open.pop(key, None)
            self._persist_open()
        self._enqueue(event)

    def _persist_open(self) -> None:
        self.history.put_state(OPEN_KEY, self._open)

    def _enqueue(self, event: AlertEvent) -> None:
        log.info("alert %s: %s", event.status, event.title)
        if not self.targets:
            return
        with self._lock:
            self._outbox.append(event.to_dict())
            self.history.put_state(OUTBOX_KEY, self._outbox)
        self._queue.put(event)

    # -- events --------------------------------------------------------------------------

    def _jobs_command(self, job: str) -> str:
        return shlex.join(["safehold", "jobs", "--config", self.config_path, "--job", job])

    def _status_command(self) -> str:
        return shlex.join(["safehold", "status", "--config", self.config_path])

    def _job_failed(self, key: str, run: JobRun) -> AlertEvent:
        error = _error_line(run.error)
        verb = "failed" if run.outcome == "failed" else "left files out (partial backup)"
        at = run.ended or self.clock()
        failures = self.history.failures_since_success(run.job)
        since = failures[0].started if failures else run.started
        lines = [
            f"The job {run.job!r} {verb} at {_when(at)} after {run.attempt} attempt(s);"
            f" failing since {_when(since)}.",
            f"Error: {error or 'no error line recorded'}",
            f"More: {self._jobs_command(run.job)}",
        ]
        return AlertEvent(
            status=FIRING,
            alert=JOB_FAILED,
            key=key,
            subject=run.job,
            title=f"safehold: {run.job} {verb}",
            message="\n".join(lines),
            since=since,
            time=at,
            error=error,
            command=self._jobs_command(run.job),
            labels=_run_labels(run),
        )

    def _job_resolved(self, key: str, run: JobRun) -> AlertEvent:
        opened = self._open[key]
        since = datetime.fromisoformat(opened["since"])
        at = run.ended or self.clock()
        lines = [
            f"The job {run.job!r} succeeded at {_when(at)}; it had been failing since"
            f" {_when(since)} ({_duration(at - since)}).",
            f"Last error: {opened.get('error') or 'none recorded'}",
            f"More: {self._jobs_command(run.job)}",
        ]
        return AlertEvent(
            status=RESOLVED,
            alert=JOB_FAILED,
            key=key,
            subject=run.job,
            title=f"safehold: {run.job} succeeds again",
            message="\n".join(lines),
            since=since,
            time=at,
            error=opened.get("error"),
            command=self._jobs_command(run.job),
            labels=_run_labels(run),
        )

    def _rpo_exceeded(self, key: str, service: ServiceStatus, now: datetime) -> AlertEvent:
        outside = [s for s in service.sources if s.breached]
        since = _breach_start(service, now)
        error = next(
            (s.problem or s.last_error for s in outside if s.problem or s.last_error), None
        )
        lines = [
            f"The service {service.name!r} is outside its RPO of {_duration(service.rpo)}"
            f" since {_when(since)}:",
            *(f"  {_source_line(source)}" for source in outside),
            f"More: {self._status_command()}",
        ]
        title = f"safehold: service {service.name} is outside its RPO ({_duration(service.rpo)})"
        return AlertEvent(
            status=FIRING,
            alert=RPO_EXCEEDED,
            key=key,
            subject=service.name,
            title=title,
            message="\n".join(lines),
            since=since,
            time=now,
            error=error,
            command=self._status_command(),
            labels={"service": service.name},
        )

    def _drill_event(
        self, key: str, service: ServiceStatus, now: datetime, since: datetime
    ) -> AlertEvent:
        """A service's drills have a problem (firing) or no longer have one (resolved)."""
        problem = service.drill_problem
        title = f"safehold: the drills of service {service.name} " + (
            "have a problem" if problem else "pass again"
        )
        return AlertEvent(
            status=FIRING if problem else RESOLVED,
            alert=DRILL_PROBLEM,
            key=key,
            subject=service.name,
            title=title,
            message=f"{problem or 'The last drill passed.'}\nMore: {self._status_command()}",
            since=since,
            time=now,
            error=problem,
            command=self._status_command(),
            labels={"service": service.name},
        )

    def _standby_event(
        self, key: str, service: str, problems: list[str], now: datetime, since: datetime
    ) -> AlertEvent:
        """A service's hot standby has problems (firing) or no longer has any (resolved)."""
        error = "; ".join(problems) or None
        title = f"safehold: the hot standby of service {service} " + (
            "has a problem" if problems else "is healthy again"
        )
        more = f"safehold standby status {service}"
        return AlertEvent(
            status=FIRING if problems else RESOLVED,
            alert=STANDBY_PROBLEM,
            key=key,
            subject=service,
            title=title,
            message=f"{error or 'Every node answers and the standbys stream.'}\nMore: {more}",
            since=since,
            time=now,
            error=error,
            command=more,
            labels={"service": service},
        )

    def _rpo_resolved(
        self, key: str, service: ServiceStatus, now: datetime, how: str
    ) -> AlertEvent:
        opened = self._open[key]
        since = datetime.fromisoformat(opened["since"])
        lines = [
            f"The service {service.name!r} is {how} (outside its RPO since {_when(since)},"
            f" for {_duration(now - since)}).",
            f"More: {self._status_command()}",
        ]
        title = f"safehold: service {service.name} is {how}"
        return AlertEvent(
            status=RESOLVED,
            alert=RPO_EXCEEDED,
            key=key,
            subject=service.name,
            title=title,
            message="\n".join(lines),
            since=since,
            time=now,
            error=opened.get("error"),
            command=self._status_command(),
            labels={"service": service.name},
        )

    # -- the delivery thread -------------------------------------------------------------

    def _timeouts(self) -> list[timedelta]:
        return [t.webhook.timeout for t in self.targets if isinstance(t, WebhookTarget)]

    def _deliver_all(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                if not self._deliver_one(event):
                    return  # abandoned by close(): it stays in the outbox for the next start
            except Exception:  # e.g. the history closed under us: log, keep the daemon up
                log.exception("alert %s: delivery bookkeeping failed", event.key)

    def _deliver_one(self, event: AlertEvent) -> bool:
        """Every target in turn; the event leaves the outbox unless close() gave up."""
        for target in self.targets:
            if not self._deliver(target, event) and self._abandon.is_set():
                return False
        with self._lock:
            self._outbox = [e for e in self._outbox if e["id"] != event.id]
            self.history.put_state(OUTBOX_KEY, self._outbox)
        return True

    def _deliver(self, target: Target, event: AlertEvent) -> bool:
        """Send with retries; False (logged) when every attempt failed."""
        for attempt, delay in enumerate((*self.retry_delays, None), start=1):
            try:
                target.send(event)
                return True
            except Exception as exc:  # any failure of any target: log it, never raise
                log.warning(
                    "alert %s to %s failed (attempt %d): %s",
                    event.key,
                    target.name,
                    attempt,
                    _reason(exc),
                )
            if delay is None or self._abandon.wait(delay):
                break
        log.error("alert %s (%s) not delivered to %s", event.key, event.status, target.name)
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _run_labels(run: JobRun) -> dict[str, str]:
    labels = {
        "job_name": run.job,
        "action": run.action,
        "target": run.target,
        "schedule": run.schedule,
        "outcome": run.outcome,
    }
    if run.action == "backup":
        labels["service"], _, labels["source"] = run.target.partition("/")
    return labels
