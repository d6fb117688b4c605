"""A failover drill: how long writes through HAProxy stop, and which acknowledged commits
are lost, when the primary dies (``kill``) or hands over (``switchover``).

A writer commits one row at a time through HAProxy's write port and records each
commit PostgreSQL acknowledged and the port of the node that took it. ``kill`` SIGKILLs
the primary's Patroni and postgres at once (a dead host: the node must run on this
host); ``switchover`` asks Patroni's REST API for a planned one. Measured: the time from
the disruption until a write succeeds again through the same port on the new primary,
the longest gap between successful writes, the acknowledged commits missing on the new
primary, and how long the old node took to come back as a replica (Patroni rewinds it;
after a kill it comes back when its service manager restarts Patroni, or the node's
``start_command``). The report is a plain dataclass; the drills of issue 16 may fold it
into their history.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg

from safehold.dr.standby.config import StandbySetup
from safehold.dr.standby.policy import StandbyNode
from safehold.dr.standby.processes import listening_pids, process_tree
from safehold.dr.standby.status import node_url, standby_status
from safehold.errors import SafeholdError

__all__ = [
    "DrillFailed",
    "FailoverDrillReport",
    "SavedReport",
    "Writer",
    "gaps",
    "kill_node",
    "run_failover_drill",
    "save_report",
    "wait_until",
]

TABLE = "safehold_failover_drill"
MODES = ("kill", "switchover")


class DrillFailed(SafeholdError):
    """failover drill: {0}"""


@dataclass
class FailoverDrillReport:
    service: str
    scope: str
    mode: str
    started_at: str
    old_primary: str
    new_primary: str | None = None
    disrupted_at: str | None = None  # the kill or the switchover request, to match with logs
    write_downtime_seconds: float | None = None  # disruption -> first write on the new primary
    longest_write_gap_seconds: float | None = None
    commits_acknowledged: int = 0
    commits_missing: list[int] = field(default_factory=list)
    old_primary_rejoined: bool = False
    rejoin_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"message_type": "failover_drill", **asdict(self)}


@dataclass
class Writer:
    """Commits one row at a time into ``table`` and records each acknowledged commit."""

    conninfo: str
    table: str = TABLE
    first_id: int = 1
    acked: list[tuple[int, int, float]] = field(default_factory=list)  # id, node port, when
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        next_id, conn = self.first_id, None
        while not self.stop.is_set():
            # an id is never tried twice: a commit whose acknowledgment was lost (the node
            # died or the session was cut while it committed) may well be there, on the new
            # primary too, and trying its id again would fail on the key from then on
            row_id, next_id = next_id, next_id + 1
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=1)
                row = conn.execute(
                    f"INSERT INTO {self.table} (id) VALUES (%s) RETURNING inet_server_port()",
                    (row_id,),
                ).fetchone()
                if row is not None:
                    self.acked.append((row_id, int(row[0]), time.monotonic()))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.02)
        if conn is not None:
            conn.close()


def wait_until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError, psycopg.Error):
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise DrillFailed(f"{what}: not within {timeout:.0f} s")


def kill_node(node: StandbyNode) -> None:
    """SIGKILL the node's Patroni and its postgres with every child, in one go."""
    patroni = listening_pids(node.rest_port)
    postmaster = listening_pids(node.port)
    if not patroni or not postmaster:
        raise DrillFailed(
            f"--mode kill needs {node.name}'s Patroni and PostgreSQL on this host (nothing"
            f" listens on port {node.rest_port if not patroni else node.port} here)"
        )
    for pid in sorted({*patroni, *process_tree(postmaster)}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _switchover(node: StandbyNode, leader: str, candidate: str) -> None:
    body = json.dumps({"leader": leader, "candidate": candidate}).encode()
    request = urllib.request.Request(node_url(node, "/switchover"), body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise DrillFailed(
            f"Patroni refused the switchover: {exc.read().decode().strip()}"
        ) from None


def _start(node: StandbyNode, log_dir: Path) -> None:
    if node.start_command is None:
        return  # its service manager restarts Patroni
    log_dir.mkdir(parents=True, exist_ok=True)
    # not the writer's libpq settings: PGPASSWORD would override the passwords Patroni
    # gives pg_rewind and replication through its pgpass file
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with (log_dir / f"patroni-{node.name}.log").open("ab") as log:
        subprocess.Popen(
            shlex.split(node.start_command),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def gaps(times: list[float], start: float) -> float:
    moments = [start, *(t for t in times if t >= start)]
    return max((b - a for a, b in itertools.pairwise(moments)), default=0.0)


def run_failover_drill(
    setup: StandbySetup, mode: str, conninfo: str, log_dir: Path, timeout: float = 120.0
) -> FailoverDrillReport:
    """``conninfo``: how to reach the write port as a user that may create a table."""
    status = standby_status(setup)
    if status.primary is None or not any(
        n.streaming for n in status.nodes if n.name != status.primary
    ):
        raise DrillFailed(
            "the cluster must have a primary and a streaming standby first: "
            + "; ".join(status.problems)
        )
    old = setup.node(status.primary)
    candidates = [n.name for n in status.nodes if n.name != old.name and n.streaming]
    if setup.standby.synchronous_mode:
        # only the replica Patroni's /sync key names may be promoted: killing the primary
        # before the key names one leaves the cluster without a primary (status.py)
        candidates = [
            wait_until("a synchronous standby", lambda: standby_status(setup).sync_standby, timeout)
        ]
    report = FailoverDrillReport(
        setup.service, setup.scope, mode, datetime.now(UTC).isoformat(), old.name
    )
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
    writer = Writer(conninfo)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        wait_until("writes through HAProxy", lambda: len(writer.acked) >= 20, 30)
        disrupted = time.monotonic()
        report.disrupted_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        if mode == "kill":
            kill_node(old)
        else:
            _switchover(old, old.name, candidates[0])
        first = wait_until(
            "a write through HAProxy on another node",
            lambda: [a for a in writer.acked if a[1] != old.port and a[2] > disrupted],
            timeout,
        )[0]
        report.write_downtime_seconds = round(first[2] - disrupted, 3)
        new_port = first[1]
        report.new_primary = next(n.name for n in setup.standby.nodes if n.port == new_port)
        time.sleep(1.0)  # some writes on the new primary, for the gap and the count
    finally:
        writer.stop.set()
        thread.join(10)
    report.longest_write_gap_seconds = round(gaps([a[2] for a in writer.acked], disrupted), 3)
    report.commits_acknowledged = len(writer.acked)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}")}
    report.commits_missing = sorted(i for i, _, _ in writer.acked if i not in present)
    if mode == "kill":
        _start(old, log_dir)
    began = time.monotonic()
    try:
        wait_until(
            f"{old.name} back as a streaming replica",
            lambda: any(n.name == old.name and n.streaming for n in standby_status(setup).nodes),
            timeout,
        )
        report.old_primary_rejoined = True
        report.rejoin_seconds = round(time.monotonic() - began, 3)
    except DrillFailed as exc:
        report.notes.append(str(exc))
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return report


class SavedReport(Protocol):
    """A failover drill's report (this one, or an application pair's)."""

    service: str
    started_at: str
    mode: str

    def to_dict(self) -> dict[str, Any]: ...


def save_report(report: SavedReport, directory: Path) -> Path:
    """The report as JSON under ``directory`` (the daemon's state directory's
    ``failover-drills/``), named by service and start time."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("-", "").split(".")[0]
    path = directory / f"{report.service}-{stamp}-{report.mode}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path
