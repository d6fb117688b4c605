"""`pg restore --start` replay time with and without its WAL spool, alternating.

    git archive BEFORE src | tar -x -C /tmp/old        # the code before the spool
    .venv/bin/python bench/pg_restore_spool_run.py --old-src /tmp/old/src --scale 10

A cluster (pgbench -i -s SCALE) archives with synchronous ``pg wal-push``; one full base
backup, then SECONDS of pgbench (4 clients), all archived; then ``pg restore --start`` to
the latest point, by the old code and by this tree in turn, ROUNDS times each. Both use
this tree's ``wal-fetch`` as restore_command (unchanged by the spool). Prints the
recovery seconds (start to out of recovery) of each run and the load average around it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sources.pg_server import (
    PG_BIN,
    PgCluster,
    free_port,
    init_cluster,
    postgres_dir,
    write_safehold_wrapper,
)

PASSWORD = "safehold-bench-password"
SRC = Path(__file__).resolve().parents[1] / "src"


def safehold(src: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env["PYTHONPATH"] = str(src)
    return subprocess.run(
        [sys.executable, "-m", "safehold", *args], capture_output=True, check=True, env=env
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-src", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: list[dict[str, object]] = []
    with postgres_dir("safehold-pgspool-") as base:
        repo, pwfile = base / "repo", base / "password"
        pwfile.write_text(PASSWORD)
        common = ["--repo", str(repo), "--password-file", str(pwfile)]
        safehold(SRC, *common, "init")
        subprocess.run(["chown", "-R", "postgres:postgres", str(repo), str(pwfile)], check=True)
        wrapper = write_safehold_wrapper(base / "safehold")
        push = f"{wrapper} {' '.join(common)} --quiet pg wal-push %p"
        cluster = init_cluster(base, "data", push, max_wal_size="1GB")
        cluster.start()
        try:
            pgbench = [str(PG_BIN / "pgbench"), *cluster.client_args()]
            subprocess.run([*pgbench, "-i", "-q", "-s", str(args.scale), "postgres"], check=True)
            cluster.wait_archived(timeout=1800)
            full = ["pg", "backup", "--type", "full", "--pgdata", str(cluster.pgdata)]
            safehold(SRC, *common, *full, "--dsn", cluster.conninfo)
            lsn0 = cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
            load = ["-c", "4", "-j", "2", "-T", str(args.seconds), "postgres"]
            subprocess.run([*pgbench, *load], check=True, capture_output=True)
            lsn1 = cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
            cluster.wait_archived(timeout=1800)
            segments = (int(lsn1) - int(lsn0)) / (16 << 20)
        finally:
            cluster.stop()
        for round_ in range(args.rounds):
            for name, src in (("old", args.old_src), ("new", SRC)):
                target = PgCluster(base / f"restored-{name}-{round_}", free_port(), base)
                load_before = os.getloadavg()[0]
                began = time.monotonic()
                proc = safehold(
                    src, "--json", *common, "pg", "restore",
                    "--target-dir", str(target.pgdata), "--port", str(target.port),
                    "--safehold-command", str(wrapper), "--start", "--connect-host", str(base),
                )  # fmt: skip
                doc = json.loads(proc.stdout)
                runs.append(
                    {
                        "code": name,
                        "recovery_seconds": doc["recovery_seconds"],
                        "command_seconds": round(time.monotonic() - began, 2),
                        "prefetched": doc.get("wal_files_prefetched"),
                        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
                target.stop()
                subprocess.run(["rm", "-rf", str(target.pgdata)], check=True)
    print(json.dumps({"scale": args.scale, "segments": round(segments, 1), "runs": runs}))


if __name__ == "__main__":
    main()
