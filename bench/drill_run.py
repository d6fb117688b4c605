"""A drill's overhead over a plain recover: `safehold recover --latest` of a PostgreSQL
database (pgbench, WAL archived) plus a directory of user files into a sandbox, then
`safehold drill --point latest` of the same service, on the same data in one run.

    .venv/bin/python bench/drill_run.py --scale 20 --files-mb 200 --wal-seconds 30 --rounds 3

Runs as root (the cluster runs as postgres). Reported: each command's wall time, the
recover's RTO, the drill's RTO and step breakdown, its checks' own time (the verify steps,
which run in parallel after the health checks both commands run: the longest) and the
overhead: the drill's RTO minus the recover's RTO minus the checks' own time, as a share
of the recover's RTO (issue 16: at most 10 %), from the medians of --rounds alternating
runs. Teardown (after the RTO) is shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recover_run import clean_env, make_files, policy, recover, run
from tests.policy import daemon_table, run_job
from tests.sources.pg_server import PG_BIN, init_cluster, postgres_dir, write_safehold_wrapper

PASSWORD = "safehold-bench-password"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (20: ~300 MB)")
    parser.add_argument("--files-mb", type=int, default=200)
    parser.add_argument("--wal-seconds", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="recover then drill, this often")
    args = parser.parse_args()
    results: dict[str, Any] = vars(args).copy()
    with postgres_dir("safehold-drill-bench-") as base:
        results |= bench(base, args)
    print(json.dumps(results, indent=1))


def bench(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    repo, password = base / "repo", base / "password"
    password.write_text(PASSWORD)
    safehold = [sys.executable, "-m", "safehold"]
    run(*safehold, "--repo", repo, "--password-file", password, "init", env=clean_env())
    run("chown", "-R", "postgres:postgres", repo, password)
    wrapper = write_safehold_wrapper(base / "safehold")
    archive = f"{wrapper} --repo {repo} --password-file {password} --quiet pg wal-push %p"
    cluster = init_cluster(base, "data", archive, max_wal_size="1GB", shared_buffers="128MB")
    files = base / "files"
    make_files(files, args.files_mb)
    cluster.start()
    try:
        run(PG_BIN / "pgbench", *cluster.client_args(), "-i", "-q", "-s", args.scale, "postgres")
        config = base / "safehold.toml"
        config.write_text(
            policy(repo, password, cluster, files, wrapper)
            + daemon_table(base / "state", metrics="off")
        )
        for target, schedule in (("bench/db", "full"), ("bench/files", "backup")):
            run_job(config, "backup", target, schedule, env=clean_env(), timeout=3600)
        run(PG_BIN / "pgbench", *cluster.client_args(), "-c", "2", "-T", args.wal_seconds,
            "postgres")  # fmt: skip
        cluster.wait_archived(timeout=3600)
        out["rounds"] = []
        for _ in range(args.rounds):  # alternating, on a shared machine: medians
            os.sync()  # each run starts with nothing of the previous one left to write back
            recovered, restored = recover(config, base / "sandbox")
            restored.stop("immediate")
            shutil.rmtree(base / "sandbox")
            os.sync()
            drilled = drill(config, base / "drills")
            out["rounds"].append({"recover": recovered, "drill": drilled})
        r = statistics.median(x["recover"]["rto_seconds"] for x in out["rounds"])
        d = statistics.median(x["drill"]["rto_seconds"] for x in out["rounds"])
        c = statistics.median(x["drill"]["checks_seconds"] for x in out["rounds"])
        out["median"] = {"recover_rto": r, "drill_rto": d, "checks": c}
        out["overhead_seconds"] = round(d - r - c, 2)
        out["overhead_share"] = round((d - r - c) / r, 3)
    finally:
        cluster.stop("immediate")
    return out


def drill(config: Path, sandbox: Path) -> dict[str, Any]:
    """`drill --point latest`; its RTO, steps, checks' own time and teardown."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "safehold", "--json", "drill", "bench", "-c", str(config),
         "--point", "latest", "--sandbox", str(sandbox)],
        capture_output=True, text=True, env=clean_env(),
    )  # fmt: skip
    seconds = round(time.monotonic() - t0, 2)
    docs = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    report = next(d for d in docs if d.get("message_type") == "drill")
    if proc.returncode != 0:
        raise SystemExit(f"drill exited {proc.returncode}: {report.get('error')}")
    steps = {
        s["step"] + (f" {s['source']}" if s["source"] else ""): s["seconds"]
        for s in report["steps"]
    }
    verify = max(
        s["seconds"] for s in report["steps"] if s["step"] == "health" or s["step"] == "verify"
    )
    return {
        "seconds": seconds,
        "rto_seconds": report["rto_seconds"],
        "checks_seconds": verify,
        "steps": steps,
        "checks": {c["name"]: c["detail"] for c in report["checks"]},
        "teardown": report["teardown"],
    }


if __name__ == "__main__":
    main()
