"""Failover times of the standby that `safehold standby config` generates, measured by
`safehold standby failover-drill` (issue 17): node kill and planned switchover, several
runs each, min / median / max.

    .venv/bin/python bench/standby_run.py --runs 3
    .venv/bin/python bench/standby_run.py --runs 3 --patroni-defaults   # also ttl 30 / loop_wait 10

Runs as root with the test suite's servers (tests/standby/cluster.py): a 3-member etcd,
two PostgreSQL 15 nodes under Patroni 4, HAProxy from the generated configuration, all on
127.0.0.1. The kill is SIGKILL of the primary's Patroni and postgres (a dead host), then
the drill starts the node again; between runs the cluster is healthy again (the drill
waits for the old primary to stream). Downtime: from the disruption to the first write
acknowledged through HAProxy's write port by the new primary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sources.pg_fixtures import pg_environment
from tests.standby.cluster import SUPERUSER_PASSWORD, run_standby_cluster

GENERATED = 'ttl = "20s"\nloop_wait = "2s"\nretry_timeout = "9s"'
PATRONI_DEFAULTS = 'ttl = "30s"\nloop_wait = "10s"\nretry_timeout = "10s"'
SETTLE_SECONDS = 3.0  # after a rejoin, as the lab did, so a run starts from a quiet cluster


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


def measure(name: str, timings: str, modes: list[str], runs: int) -> list[dict[str, Any]]:
    rows = []
    with pg_environment() as env, run_standby_cluster(env, timings) as cluster:
        for mode in modes:
            reports = []
            for i in range(runs):
                time.sleep(SETTLE_SECONDS)
                report = drill(env, cluster.policy, mode)
                print(
                    f"{name} {mode} run {i + 1}: writes back after"
                    f" {report['write_downtime_seconds']} s, missing"
                    f" {len(report['commits_missing'])}, rejoined after {report['rejoin_seconds']} s",
                    file=sys.stderr,
                )
                reports.append(report)
            rows.append({"setup": name, "mode": mode, "runs": reports})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setup | mode | runs | writes back through HAProxy, s | longest write gap, s"
        " | acknowledged commits missing | old primary streaming again, s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row["runs"]
        lines.append(
            f"| {row['setup']} | {row['mode']} | {len(runs)}"
            f" | {spread([r['write_downtime_seconds'] for r in runs])}"
            f" | {spread([r['longest_write_gap_seconds'] for r in runs])}"
            f" | {', '.join(str(len(r['commits_missing'])) for r in runs)}"
            f" | {spread([r['rejoin_seconds'] for r in runs if r['rejoin_seconds'] is not None])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--patroni-defaults", action="store_true")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    rows = measure("generated (ttl 20s, loop_wait 2s, retry_timeout 9s)", GENERATED,
                   ["kill", "switchover"], args.runs)  # fmt: skip
    if args.patroni_defaults:
        rows += measure("Patroni's defaults (ttl 30s, loop_wait 10s, retry_timeout 10s)",
                        PATRONI_DEFAULTS, ["kill"], args.runs)  # fmt: skip
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
