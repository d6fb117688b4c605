"""A new standby from the repository (`safehold pg standby create`) against `pg_basebackup`
from the primary, for the same cluster: wall time, and the CPU the primary's PostgreSQL
spends while each runs (issue 17).

    .venv/bin/python bench/standby_create_run.py --scale 130 --rounds 2   # ~2 GB

Runs as root with the test suite's PostgreSQL 15 (tests/sources/pg_fixtures.py: fsync
off, WAL archived by `safehold pg wal-push`): `pgbench -i` at the scale given, a full
`safehold pg backup`, then alternating rounds of `pg standby create` and
`pg_basebackup -X stream -c fast`, each into a new data directory removed afterwards.
The primary's CPU is the user + system time of its postmaster and every child, the
children that exited during the run included (the postmaster reaps them), read by psutil
before and after; its reads are what its processes read (files and sockets, the page
cache included), sampled every 0.2 s. The tool's own CPU (safehold, pg_basebackup) is its
rusage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import free_port
from tests.sources.pg_fixtures import pg_environment
from tests.sources.pg_server import PG_BIN, PgCluster


def primary_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster, its live children and the children it reaped."""
    root = psutil.Process(postmaster)
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue  # reaped between the listing and the reading: in the parent's now
        total += child_times.user + child_times.system
    return total


def reads(postmaster: int) -> dict[int, int]:
    """Bytes each child of the postmaster has read (files and sockets, page cache too)."""
    read = {}
    for child in psutil.Process(postmaster).children():
        try:
            read[child.pid] = child.io_counters().read_chars
        except psutil.NoSuchProcess:
            continue
    return read


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str | Path], primary: PgCluster) -> dict[str, float]:
    """Run ``argv``: its wall time, its CPU, and the primary's CPU and reads meanwhile
    (sampled every 0.2 s: a walsender's reads are lost when it exits)."""
    postmaster = primary.pid()
    assert postmaster is not None
    cpu_before, tool_before = primary_cpu(postmaster), children_cpu()
    before = reads(postmaster)
    read: dict[int, int] = {}  # pid: what it read since the start, when last seen
    start = time.monotonic()
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        for pid, total in reads(postmaster).items():
            read[pid] = total - before.get(pid, 0)
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {proc.returncode}")
    return {
        "seconds": round(time.monotonic() - start, 2),
        "primary_cpu_seconds": round(primary_cpu(postmaster) - cpu_before, 2),
        "primary_read_gb": round(sum(read.values()) / 1e9, 2),
        "tool_cpu_seconds": round(children_cpu() - tool_before, 2),
        "load_average": round(os.getloadavg()[0], 1),
    }


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=130, help="pgbench scale (130: ~2 GB)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with pg_environment() as env:
        primary = env.cluster("primary")
        pgbench = [PG_BIN / "pgbench", *primary.client_args(), "-i", "-q", "-s", str(args.scale)]
        subprocess.run([*map(str, pgbench), "postgres"], check=True, capture_output=True)
        size = du(primary.pgdata)
        print(f"cluster: {size / 1e9:.2f} GB", file=sys.stderr)
        env.backup(primary, "full")
        primary.wait_archived()
        target = env.base / "new_standby"
        runs: dict[str, list[dict[str, float]]] = {"safehold pg standby create": [],
                                                   "pg_basebackup -X stream": []}  # fmt: skip
        create: list[str | Path] = [
            sys.executable, "-m", "safehold", *env.safehold_args, "--quiet", "pg", "standby",
            "create", "--pgdata", target, "--primary-conninfo", primary.conninfo,
            "--port", str(free_port()), "--safehold-command", env.wrapper,
        ]  # fmt: skip
        basebackup: list[str | Path] = [
            "runuser", "-u", "postgres", "--", PG_BIN / "pg_basebackup", *primary.client_args(),
            "-D", target, "-X", "stream", "-c", "fast",
        ]  # fmt: skip
        for _ in range(args.rounds):
            for name, argv in zip(runs, (create, basebackup), strict=True):
                subprocess.run(["sync"], check=True)
                result = timed(argv, primary)
                result["gb"] = round(du(target) / 1e9, 2)
                print(f"{name}: {result}", file=sys.stderr)
                runs[name].append(result)
                shutil.rmtree(target)
    if args.json_out:
        args.json_out.write_text(json.dumps({"cluster_bytes": size, "runs": runs}, indent=2))
    print(f"cluster {size / 1e9:.2f} GB (pgbench -i -s {args.scale}), {args.rounds} rounds")
    print(
        "| method | wall, s | primary's PostgreSQL CPU, s | primary's reads, GB"
        " | the tool's CPU, s | load average |"
    )
    print("|---|---|---|---|---|---|")
    for name, results in runs.items():
        cells = [
            " / ".join(f"{r[key]:.2f}" for r in results)
            + f" (median {statistics.median(r[key] for r in results):.2f})"
            for key in ("seconds", "primary_cpu_seconds", "primary_read_gb", "tool_cpu_seconds")
        ]
        loads = [r["load_average"] for r in results]
        print(f"| {name} | {' | '.join(cells)} | {min(loads)}-{max(loads)} |")


if __name__ == "__main__":
    main()
