"""Failover times of the standby that `safehold standby config` generates, measured by
`safehold standby failover-drill` (issue 17): node kill and planned switchover, several
runs each, min / median / max.

    .venv/bin/python bench/standby_run.py --runs 3
    .venv/bin/python bench/standby_run.py --runs 3 --patroni-defaults   # also ttl 30 / loop_wait 10
    .venv/bin/python bench/standby_run.py --app --runs 5   # an application pair (bench/standby_app.py)
    .venv/bin/python bench/standby_run.py --app --hang --runs 5   # its active hanging (SIGSTOP)

Runs as root with the test suite's servers (tests/standby/cluster.py): a 3-member etcd,
two PostgreSQL 15 nodes under Patroni 4, HAProxy from the generated configuration, all on
127.0.0.1. The kill is SIGKILL of the primary's Patroni and postgres (a dead host), then
the drill starts the node again; between runs the cluster is healthy again (the drill
waits for the old primary to stream). Downtime: from the disruption to the first write
acknowledged through HAProxy's write port by the new primary. Where that time goes is
traced from outside the drill, polling every 20 ms: when the new node's Patroni first
answers `/primary` with 200 (promoted), and when HAProxy's runtime API first counts it UP
on the write port. The load average of the machine is recorded with each run.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sources.pg_fixtures import pg_environment
from tests.standby.cluster import SUPERUSER_PASSWORD, Cluster, run_standby_cluster
from tests.standby.servers import rest

# name: (what the table says, the standby table's keys)
SETUPS = {
    "generated": (
        "generated (ttl 20s, loop_wait 2s, retry_timeout 9s)",
        'ttl = "20s"\nloop_wait = "2s"\nretry_timeout = "9s"',
    ),
    "patroni-defaults": (
        "Patroni's defaults (ttl 30s, loop_wait 10s, retry_timeout 10s)",
        'ttl = "30s"\nloop_wait = "10s"\nretry_timeout = "10s"',
    ),
}
SETTLE_SECONDS = 3.0  # after a rejoin, as the lab did, so a run starts from a quiet cluster
TRACE_SECONDS = 0.02
PHASES = ("promoted", "haproxy_up")


@dataclass
class Tracer:
    """Polls each node's ``/primary`` and HAProxy's UP servers of the write port; keeps the
    first wall-clock moment each node was seen primary and seen UP."""

    cluster: Cluster
    primary_since: dict[str, float] = field(default_factory=dict)
    up_since: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for name, node in self.cluster.nodes.items():
                if rest(node.rest_port, "/primary")[0] == 200:
                    self.primary_since.setdefault(name, time.time())
            try:
                for name in self.cluster.haproxy.servers_up("db_write"):
                    self.up_since.setdefault(name, time.time())
            except OSError:
                pass
            time.sleep(TRACE_SECONDS)

    def phases(self, report: dict[str, Any]) -> dict[str, float | None]:
        """Seconds from the disruption until the new primary answered ``/primary`` 200,
        and until HAProxy counted it UP."""
        start = datetime.fromisoformat(report["disrupted_at"]).timestamp()
        new = report["new_primary"]

        def since(moments: dict[str, float]) -> float | None:
            return round(moments[new] - start, 3) if new in moments else None

        return {"promoted": since(self.primary_since), "haproxy_up": since(self.up_since)}


def drill(env: Any, policy: Path, mode: str) -> dict[str, Any]:
    proc = env.run(
        "--json", "standby", "failover-drill", "db", "-c", policy, "--mode", mode,
        extra_env={"PGPASSWORD": SUPERUSER_PASSWORD}, timeout=600,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def wait_healthy(env: Any, policy: Path, deadline_seconds: float = 180.0) -> None:
    """Until ``standby status`` has no problem (a primary and a streaming standby): with
    Patroni's defaults (loop_wait 10 s) a rejoined node streams well after it runs."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        proc = env.run(
            "--json", "standby", "status", "db", "-c", policy, check=False,
            extra_env={"PGPASSWORD": SUPERUSER_PASSWORD},
        )  # fmt: skip
        if proc.returncode == 0 and json.loads(proc.stdout).get("healthy"):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster did not become healthy: {proc.stdout.decode()}")
        time.sleep(1)


def traced_drill(env: Any, cluster: Cluster, mode: str) -> dict[str, Any]:
    """One drill with the tracer running, the phases and the load average added."""
    wait_healthy(env, cluster.policy)
    tracer = Tracer(cluster)
    thread = threading.Thread(target=tracer.run, daemon=True)
    thread.start()
    try:
        report = drill(env, cluster.policy, mode)
    finally:
        tracer.stop.set()
        thread.join(5)
    report["phases"] = tracer.phases(report)
    report["load_average"] = round(os.getloadavg()[0], 1)
    return report


def measure(name: str, timings: str, modes: list[str], runs: int) -> list[dict[str, Any]]:
    rows = []
    with pg_environment() as env, run_standby_cluster(env, timings) as cluster:
        for mode in modes:
            reports = []
            for i in range(runs):
                time.sleep(SETTLE_SECONDS)
                report = traced_drill(env, cluster, mode)
                print(
                    f"{name} {mode} run {i + 1}: {report['phases']}, writes back after"
                    f" {report['write_downtime_seconds']} s, missing"
                    f" {len(report['commits_missing'])}, rejoined after {report['rejoin_seconds']}"
                    f" s, load {report['load_average']}",
                    file=sys.stderr,
                )
                reports.append(report)
            rows.append({"setup": name, "mode": mode, "runs": reports})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setup | mode | runs | load average | new node `/primary` 200, s | HAProxy marks it UP, s"
        " | writes back through HAProxy, s | longest write gap, s"
        " | acknowledged commits missing | old primary streaming again, s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row["runs"]
        loads = [r["load_average"] for r in runs]
        phase = {k: [r["phases"][k] for r in runs if r["phases"][k] is not None] for k in PHASES}
        lines.append(
            f"| {row['setup']} | {row['mode']} | {len(runs)} | {min(loads)}-{max(loads)}"
            f" | {spread(phase['promoted'])} | {spread(phase['haproxy_up'])}"
            f" | {spread([r['write_downtime_seconds'] for r in runs])}"
            f" | {spread([r['longest_write_gap_seconds'] for r in runs])}"
            f" | {', '.join(str(len(r['commits_missing'])) for r in runs)}"
            f" | {spread([r['rejoin_seconds'] for r in runs if r['rejoin_seconds'] is not None])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--setup", action="append", choices=SETUPS, help="repeatable; default: generated"
    )
    parser.add_argument("--modes", default="kill,switchover")
    parser.add_argument("--patroni-defaults", action="store_true", help="also: kill only")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--app", action="store_true", help="an application pair instead")
    parser.add_argument("--hang", action="store_true", help="with --app: SIGSTOP, not kill")
    parser.add_argument(
        "--compile", action="store_true", help="write src/'s bytecode first, as pip does"
    )
    args = parser.parse_args()
    if args.compile:  # else, under PYTHONDONTWRITEBYTECODE, every restore_command compiles all
        compileall.compile_dir(Path(__file__).resolve().parents[1] / "src", quiet=1)
    if args.app:
        from bench.standby_app import measure_app, measure_hang

        print(measure_hang(args.runs) if args.hang else measure_app(args.runs, args.json_out))
        return
    rows = []
    for setup in args.setup or ["generated"]:
        rows += measure(*SETUPS[setup], args.modes.split(","), args.runs)
    if args.patroni_defaults:
        rows += measure(*SETUPS["patroni-defaults"], ["kill"], args.runs)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
