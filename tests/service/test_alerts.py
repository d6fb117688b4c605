"""Alerts delivered to a real HTTP server started by each test (http.server on a free
port of 127.0.0.1), from runs recorded in a real job history on disk."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from safehold.dr.policy import AlertSettings
from safehold.dr.standby.status import StandbyStatus
from safehold.dr.status import ProtectionStatus, ServiceStatus, SourceStatus
from safehold.errors import InvalidArgument
from safehold.service.alerts import Alerter
from safehold.service.history import JobHistory, JobRun
from tests.servers import free_port

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
JOB = "sync/db full"
CONFIG = "/etc/safehold/safehold.toml"
FAST = (0.05, 0.05, 0.05)


class Receiver:
    """An HTTP server recording the JSON documents POSTed to it; it can answer
    ``failure_status`` (503; 302 redirects to itself) to the first ``failures`` requests,
    and wait ``delay`` seconds before answering."""

    def __init__(self, failures: int = 0, delay: float = 0.0, failure_status: int = 503) -> None:
        self.documents: list[dict[str, Any]] = []
        self.requests = 0
        self.gets = 0
        self.failures = failures
        self.failure_status = failure_status
        self.delay = delay
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                with receiver.changed:
                    receiver.requests += 1
                    failing = receiver.requests <= receiver.failures
                    if not failing:
                        receiver.documents.append(json.loads(body))
                    receiver.changed.notify_all()
                self.send_response(receiver.failure_status if failing else 200)
                self.send_header("Location", receiver.url)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                with receiver.changed:
                    receiver.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The documents, once at least ``count`` have arrived."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.documents) >= count, timeout)
            return list(self.documents)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def history(tmp_path: Path) -> Iterator[JobHistory]:
    history = JobHistory(tmp_path / "history.sqlite")
    yield history
    history.close()


def webhook(url: str) -> AlertSettings:
    return AlertSettings.model_validate({"webhooks": [{"url": url, "timeout": "2s"}]})


def alerter(history: JobHistory, settings: AlertSettings) -> Alerter:
    """An alerter that retries quickly, so that tests of failing endpoints stay short."""
    return Alerter(settings, history, CONFIG, retry_delays=FAST)


def run(history: JobHistory, outcome: str, error: str | None = None, minutes: int = 0) -> JobRun:
    """A finished run of JOB recorded in ``history``, as the daemon would pass it."""
    start = NOW + timedelta(minutes=minutes)
    run_id = history.start(JOB, "backup", "sync/db", "full", start, attempt=4, now=start)
    history.finish(run_id, outcome, error=error, now=start + timedelta(seconds=30))
    found = history.last(JOB)
    assert found is not None and found.id == run_id
    return found


def status(exposure: timedelta | None, problem: str | None = None) -> ProtectionStatus:
    rpo = timedelta(minutes=15)
    point = NOW - exposure if exposure is not None else None
    within = exposure is not None and exposure <= rpo
    db = SourceStatus(
        "sync",
        "db",
        "postgres",
        rpo,
        recovery_point=point,
        exposure=exposure,
        within_objective=within,
        problem=problem,
    )
    return ProtectionStatus(NOW, [ServiceStatus("sync", rpo, timedelta(hours=1), [db])])


def test_a_failure_fires_once_and_a_success_resolves(
    history: JobHistory, receiver: Receiver
) -> None:
    alerts = alerter(history, webhook(receiver.url))
    alerts.job_finished(run(history, "failed", "pg_basebackup: error\nconnection refused"))
    alerts.job_finished(run(history, "failed", "still refused", minutes=60))
    alerts.job_finished(run(history, "interrupted", minutes=90))
    alerts.job_finished(run(history, "success", minutes=120))
    alerts.job_finished(run(history, "success", minutes=180))
    assert alerts.close()

    firing, resolved = receiver.documents
    assert receiver.requests == 2
    assert firing["status"] == "firing" and resolved["status"] == "resolved"
    assert firing["alert"] == resolved["alert"] == "job_failed"
    assert firing["key"] == resolved["key"] == f"job_failed:{JOB}"
    assert firing["subject"] == JOB
    assert firing["error"] == "connection refused"  # the last line of the stderr tail
    assert firing["since"] == NOW.isoformat()
    assert resolved["since"] == NOW.isoformat()
    assert resolved["time"] == (NOW + timedelta(minutes=120, seconds=30)).isoformat()
    command = f"safehold jobs --config {CONFIG} --job 'sync/db full'"
    assert firing["command"] == resolved["command"] == command
    assert command in firing["message"] and "4 attempt(s)" in firing["message"]
    assert firing["labels"]["service"] == "sync" and firing["labels"]["source"] == "db"
    assert firing["version"] == 1 and firing["source"] == "safehold" and firing["host"]
    assert firing["id"] != resolved["id"]
    assert alerts.open_alerts() == {}


def test_a_restarted_alerter_neither_refires_nor_forgets(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "history.sqlite"
    first_history = JobHistory(path)
    first = alerter(first_history, webhook(receiver.url))
    first.job_finished(run(first_history, "failed", "disk full"))
    first.status_computed(status(timedelta(hours=2)))
    assert first.close()
    first_history.close()
    assert len(receiver.documents) == 2

    history = JobHistory(path)  # the daemon started again
    second = alerter(history, webhook(receiver.url))
    assert set(second.open_alerts()) == {f"job_failed:{JOB}", "rpo_exceeded:sync"}
    second.job_finished(run(history, "failed", "disk full", minutes=60))
    second.status_computed(status(timedelta(hours=3)))
    second.job_finished(run(history, "success", minutes=120))
    second.status_computed(status(timedelta(minutes=1)))
    assert second.close()
    history.close()

    states = [(d["alert"], d["status"]) for d in receiver.documents]
    assert states == [
        ("job_failed", "firing"),
        ("rpo_exceeded", "firing"),
        ("job_failed", "resolved"),
        ("rpo_exceeded", "resolved"),
    ]
    assert receiver.documents[2]["error"] == "disk full"  # remembered across the restart


def test_an_rpo_breach_fires_and_clears(history: JobHistory, receiver: Receiver) -> None:
    alerts = alerter(history, webhook(receiver.url))
    alerts.status_computed(status(timedelta(minutes=5)))
    alerts.status_computed(status(timedelta(minutes=40), problem="repository unreachable"))
    alerts.status_computed(status(timedelta(minutes=41)))
    alerts.status_computed(status(timedelta(minutes=2)))
    assert alerts.close()

    firing, resolved = receiver.documents
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert firing["key"] == resolved["key"] == "rpo_exceeded:sync"
    # outside since the recovery point plus the objective: 40 - 15 = 25 minutes ago
    assert firing["since"] == (NOW - timedelta(minutes=25)).isoformat()
    assert firing["error"] == "repository unreachable"
    assert firing["command"] == f"safehold status --config {CONFIG}"
    assert "sync/db: 40m of data at risk" in firing["message"]
    assert "15m" in firing["title"]


def test_a_never_backed_up_service_fires_and_a_removed_one_resolves(
    history: JobHistory, receiver: Receiver
) -> None:
    alerts = alerter(history, webhook(receiver.url))
    alerts.status_computed(status(None))
    alerts.status_computed(ProtectionStatus(NOW + timedelta(hours=1), []))  # policy changed
    assert alerts.close()
    firing, resolved = receiver.documents
    assert "sync/db: never backed up" in firing["message"]
    assert firing["since"] == NOW.isoformat()
    assert resolved["status"] == "resolved" and "no longer in the policy" in resolved["title"]


def test_a_failing_endpoint_is_retried(history: JobHistory) -> None:
    flaky = Receiver(failures=2)
    try:
        alerts = alerter(history, webhook(flaky.url))
        alerts.job_finished(run(history, "failed", "boom"))
        assert alerts.close()
        assert flaky.requests == 3
        assert [d["status"] for d in flaky.documents] == ["firing"]
    finally:
        flaky.close()


def test_a_redirect_is_a_failure_not_a_get(history: JobHistory) -> None:
    """urllib would follow a 302 with a GET that drops the document and call it done."""
    moved = Receiver(failures=1, failure_status=302)
    try:
        alerts = alerter(history, webhook(moved.url))
        alerts.job_finished(run(history, "failed", "boom"))
        assert alerts.close()
        assert (moved.requests, moved.gets, len(moved.documents)) == (2, 0, 1)
    finally:
        moved.close()


def test_a_dead_endpoint_does_not_raise(
    history: JobHistory, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = alerter(history, webhook(f"http://127.0.0.1:{free_port()}/hook"))
    with caplog.at_level(logging.WARNING, logger="safehold.service.alerts"):
        alerts.job_finished(run(history, "failed", "boom"))
        assert alerts.close()  # given up after its retries: nothing left to deliver
    attempts = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert len(attempts) == 1 + len(FAST)
    assert any("not delivered" in r.getMessage() for r in caplog.records)
    assert set(alerts.open_alerts()) == {f"job_failed:{JOB}"}  # the alert itself is open


def test_the_caller_never_waits_for_delivery(history: JobHistory) -> None:
    slow = Receiver(delay=0.8)
    try:
        alerts = alerter(history, webhook(slow.url))
        started = time.monotonic()
        alerts.job_finished(run(history, "failed", "boom"))
        alerts.job_finished(run(history, "success", minutes=10))
        assert time.monotonic() - started < 0.5
        assert alerts.close(timeout=10)
        assert [d["status"] for d in slow.documents] == ["firing", "resolved"]
    finally:
        slow.close()


def test_undelivered_events_are_sent_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    """close() gives up on an endpoint that is down; the next daemon delivers the event."""
    path = tmp_path / "history.sqlite"
    first_history = JobHistory(path)
    down = webhook(f"http://127.0.0.1:{free_port()}/hook")
    first = Alerter(down, first_history, CONFIG, retry_delays=(30.0,))
    first.job_finished(run(first_history, "failed", "boom"))
    started = time.monotonic()
    assert not first.close(timeout=0.5)
    assert time.monotonic() - started < 5
    first_history.close()

    history = JobHistory(path)
    second = alerter(history, webhook(receiver.url))
    assert second.close()
    history.close()
    assert [(d["status"], d["error"]) for d in receiver.documents] == [("firing", "boom")]


def test_url_from_the_environment(
    history: JobHistory, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEHOLD_TEST_HOOK", receiver.url)
    settings = AlertSettings.model_validate({"webhooks": [{"url_env": "SAFEHOLD_TEST_HOOK"}]})
    alerts = alerter(history, settings)
    alerts.job_finished(run(history, "failed", "boom"))
    assert alerts.close()
    assert len(receiver.documents) == 1


def test_url_from_a_file(history: JobHistory, receiver: Receiver, tmp_path: Path) -> None:
    url_file = tmp_path / "webhook.url"
    url_file.write_text(receiver.url + "\n")
    settings = AlertSettings.model_validate({"webhooks": [{"url_file": str(url_file)}]})
    alerts = alerter(history, settings)
    alerts.job_finished(run(history, "failed", "boom"))
    assert alerts.close()
    assert len(receiver.documents) == 1


def test_apprise_json_url(history: JobHistory, receiver: Receiver, tmp_path: Path) -> None:
    """apprise's json:// plugin POSTs {version, title, message, type} to our server."""
    config = tmp_path / "apprise.txt"
    config.write_text(receiver.url.replace("http://", "json://") + "\n")
    settings = AlertSettings.model_validate({"apprise_config": str(config)})
    alerts = alerter(history, settings)
    alerts.job_finished(run(history, "failed", "disk full"))
    alerts.job_finished(run(history, "success", minutes=5))
    assert alerts.close()
    firing, resolved = receiver.documents
    assert firing["title"] == f"safehold: {JOB} failed"
    assert "disk full" in firing["message"] and firing["type"] == "failure"
    assert resolved["title"] == f"safehold: {JOB} succeeds again"
    assert resolved["type"] == "success"


def test_missing_apprise_is_a_clear_error(
    history: JobHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one fault caused by hand: apprise is installed here, so hide it from import.
    monkeypatch.setitem(sys.modules, "apprise", None)
    settings = AlertSettings.model_validate({"apprise_config": str(tmp_path / "a.txt")})
    with pytest.raises(InvalidArgument, match="apprise package is not installed"):
        Alerter(settings, history, CONFIG)


def test_a_drill_problem_fires_once_and_a_passing_drill_resolves(
    history: JobHistory, receiver: Receiver
) -> None:
    def drilled(problem: str | None) -> ProtectionStatus:
        computed = status(timedelta(minutes=5))  # within its RPO throughout
        computed.services[0].drill = {"last": None}
        computed.services[0].drill_problem = problem
        return computed

    alerts = alerter(history, webhook(receiver.url))
    failed = "the last drill (20261206T010000000000Z) failed: files data: 1 of 20 files differ"
    alerts.status_computed(drilled(None))
    alerts.status_computed(drilled(failed))
    alerts.status_computed(drilled(failed))
    alerts.status_computed(drilled(None))
    assert alerts.close()
    firing, resolved = receiver.documents
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert firing["key"] == resolved["key"] == "drill_problem:sync"
    assert firing["error"] == failed and failed in firing["message"]
    assert firing["title"] == "safehold: the drills of service sync have a problem"
    assert resolved["title"] == "safehold: the drills of service sync pass again"


def test_a_standby_problem_fires_once_and_a_healthy_cluster_resolves(
    history: JobHistory, receiver: Receiver
) -> None:
    def standby(problems: list[str]) -> ProtectionStatus:
        computed = status(timedelta(minutes=5))  # within its RPO throughout
        cluster = StandbyStatus("sync", "sync", False, "pg1", 1, None, problems=problems)
        computed.services[0].standby = cluster
        return computed

    alerts = alerter(history, webhook(receiver.url))
    alone = [
        "pg2 does not answer (Connection refused)",
        "no healthy standby: the primary runs alone",
    ]
    alerts.status_computed(standby([]))
    alerts.status_computed(standby(alone))
    alerts.status_computed(standby(alone))
    alerts.status_computed(standby([]))
    assert alerts.close()
    firing, resolved = receiver.documents
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert firing["key"] == resolved["key"] == "standby_problem:sync"
    assert firing["error"] == "; ".join(alone) and alone[1] in firing["message"]
    assert firing["title"] == "safehold: the hot standby of service sync has a problem"
    assert resolved["title"] == "safehold: the hot standby of service sync is healthy again"
