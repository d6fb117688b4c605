"""An application pair's failover drill: how long requests through HAProxy fail, and how
many, when the active instance dies.

A client sends one request after the other to HAProxy's frontend (the health check's
request), recording when each one ended, whether it succeeded and which instance
answered it (``X-Safehold-Instance``). The active instance is then stopped at once:
its ``stop_command``, else SIGKILL to the process in its ``pidfile`` and every child,
else SIGKILL to the processes listening on its port (then it must run on this host).
Measured: the time from the kill until a request is answered by another instance, the
longest gap between answered requests, the requests that failed; then the active is
started again (``start_command``, else its service manager), also when no passive
answered, and the time until requests go to it again.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safehold.dr.standby.app_policy import AppInstance, AppPair
from safehold.dr.standby.app_status import Probe, app_status, frontend_host, probe
from safehold.dr.standby.drill import DrillFailed, gaps, wait_until
from safehold.dr.standby.processes import listening_pids, process_tree
from safehold.sources import external

__all__ = ["AppFailoverReport", "RequestClient", "run_app_failover_drill"]

REQUEST_TIMEOUT = 10.0  # HAProxy may hold a request for its retries: seconds, not one


@dataclass
class AppFailoverReport:
    service: str
    mode: str
    started_at: str
    active: str
    stopped_by: str = ""  # how the active was stopped
    serving: str | None = None  # the instance that answered after the kill
    failover_seconds: float | None = None  # kill -> first request answered by another
    longest_gap_seconds: float | None = None  # between two answered requests
    requests: int = 0
    failed_requests: int = 0
    errors: list[str] = field(default_factory=list)  # the first few failures, as seen
    active_back: bool = False
    back_seconds: float | None = None  # started again -> requests answered by it
    objective_seconds: float | None = None  # the pair's failover_objective
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"message_type": "app_failover_drill", **asdict(self)}


@dataclass
class _Answer:
    ended: float
    probe: Probe


@dataclass
class RequestClient:
    """One request after the other through HAProxy's frontend, each one recorded."""

    app: AppPair
    answers: list[_Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        host = frontend_host(self.app)
        while not self.stop.is_set():
            found = probe(self.app, host, self.app.port, REQUEST_TIMEOUT)
            self.answers.append(_Answer(time.monotonic(), found))
            time.sleep(0.02)

    def answered_by(self, name: str, since: float) -> _Answer | None:
        return next(
            (
                a
                for a in self.answers
                if a.ended > since and a.probe.ok and a.probe.instance == name
            ),
            None,
        )


def _stop(inst: AppInstance) -> str:
    """Stop the instance at once; how it was done."""
    if inst.stop_command is not None:
        external.run(shlex.split(inst.stop_command), timeout=60)
        return f"stop_command {inst.stop_command!r}"
    if inst.pidfile is not None:
        try:
            roots = {int(Path(inst.pidfile).read_text().split()[0])}
        except (OSError, ValueError, IndexError) as exc:
            raise DrillFailed(f"cannot read {inst.name}'s pidfile {inst.pidfile}: {exc}") from None
        how = f"SIGKILL to PID {min(roots)} (pidfile {inst.pidfile}) and its children"
    else:
        roots = listening_pids(inst.port)
        if not roots:
            raise DrillFailed(
                f"nothing listens on port {inst.port} here: give {inst.name} a pidfile or a"
                " stop_command, or run the drill on its host"
            )
        how = f"SIGKILL to the processes listening on port {inst.port} and their children"
    for pid in sorted(process_tree(roots)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return how


def _start(inst: AppInstance, log_dir: Path) -> None:
    if inst.start_command is None:
        return  # its service manager restarts it
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"app-{inst.name}.log").open("ab") as log:
        subprocess.Popen(
            shlex.split(inst.start_command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def run_app_failover_drill(
    service: str, app: AppPair, log_dir: Path, timeout: float = 120.0
) -> AppFailoverReport:
    """Kill the active instance while a client sends requests through HAProxy."""
    if app.mode == "tcp" or app.check == "tcp":
        raise DrillFailed(
            'the drill sends HTTP requests through the frontend: it needs mode = "http" and'
            ' check = "http" (through a TCP frontend HAProxy accepts every connection,'
            " answered or not)"
        )
    before = app_status(app)
    active = app.active
    if before.serving != active.name or not any(
        i.healthy for i in before.instances if i.role == "passive"
    ):
        raise DrillFailed(
            f"{active.name} must serve and a passive be healthy first: "
            + "; ".join(before.problems())
        )
    report = AppFailoverReport(
        service,
        "kill",
        datetime.now(UTC).isoformat(),
        active.name,
        objective_seconds=app.failover_objective.total_seconds()
        if app.failover_objective
        else None,
    )
    client = RequestClient(app)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        wait_until("requests through HAProxy", lambda: client.answered_by(active.name, 0), 30)
        killed = time.monotonic()
        report.stopped_by = _stop(active)
        try:
            first = wait_until(
                "a request answered by a passive instance",
                lambda: next(
                    (
                        a
                        for a in client.answers
                        if a.ended > killed and a.probe.ok and a.probe.instance != active.name
                    ),
                    None,
                ),
                timeout,
            )
            report.serving = first.probe.instance
            report.failover_seconds = round(first.ended - killed, 3)
            time.sleep(1.0)  # some answered requests after the switch, for the gap
        except DrillFailed as exc:  # the report says so; the active comes back all the same
            report.notes.append(str(exc))
        _start(active, log_dir)
        began = time.monotonic()
        try:
            back = wait_until(
                f"requests answered by {active.name} again",
                lambda: client.answered_by(active.name, began),
                timeout,
            )
            report.active_back = True
            report.back_seconds = round(back.ended - began, 3)
        except DrillFailed as exc:
            report.notes.append(str(exc))
    finally:
        client.stop.set()
        thread.join(REQUEST_TIMEOUT + 5)
    after = [a for a in client.answers if a.ended > killed]
    failed = [a for a in after if not a.probe.ok]
    report.requests = len(after)
    report.failed_requests = len(failed)
    report.errors = [str(a.probe.error) for a in failed[:5]]
    report.longest_gap_seconds = round(gaps([a.ended for a in after if a.probe.ok], killed), 3)
    return report
