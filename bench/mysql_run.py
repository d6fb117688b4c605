"""MariaDB physical backups: safehold's full, incremental and restore beside plain mariabackup.

A scratch MariaDB (the tests' server helper) is loaded with about 1 GiB of InnoDB data;
then plain `mariabackup --backup/--prepare/--move-back` into a local directory (the floor)
and `safehold mysql backup --type full`, `--type incr` after 1 % of rows changed, a second
full, and `safehold mysql restore` of the full+incremental chain, each timed.

    python bench/mysql_run.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.sources.mysql_server import MariaServer, mysql_dir

SAFEHOLD = [sys.executable, "-m", "safehold", "--json"]


def timed(label: str, argv: list[str], env: dict[str, str] | None = None) -> Any:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, env=env)
    seconds = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"{label} failed: {proc.stderr.decode()[-800:]}")
    print(f"| {label} | {seconds:.1f} s |", flush=True)
    return json.loads(proc.stdout) if proc.stdout.strip().startswith(b"{") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    with mysql_dir("safehold-mbench-") as base:
        server = MariaServer(base, "bench", binlog=False).install().start()
        server.sql(
            "CREATE DATABASE b; CREATE TABLE b.t(id INT PRIMARY KEY, a VARCHAR(1000), "
            "r VARBINARY(200)) ENGINE=InnoDB"
        )
        for low in range(0, rows, 100_000):
            server.sql(
                "INSERT INTO b.t SELECT seq, repeat(md5(seq), 25), random_bytes(128) "
                f"FROM seq_{low + 1}_to_{low + 100_000}",
                "b",
            )
        size = subprocess.run(["du", "-sb", str(server.datadir)], capture_output=True).stdout
        print(f"{rows} rows, data directory {int(size.split()[0]) / 2**30:.2f} GiB\n")
        print("| step | time |\n|---|---|")
        conn = [f"--socket={server.socket}", "--user=root"]
        floor = base / "floor"
        timed(
            "plain mariabackup --backup",
            [
                "mariabackup",
                *conn,
                "--backup",
                f"--target-dir={floor}",
                f"--datadir={server.datadir}",
            ],
        )
        timed(
            "plain mariabackup --prepare",
            ["mariabackup", "--no-defaults", "--prepare", f"--target-dir={floor}"],
        )
        timed(
            "plain mariabackup --move-back",
            [
                "mariabackup",
                "--no-defaults",
                "--move-back",
                f"--target-dir={floor}",
                f"--datadir={base}/moved",
            ],
        )
        shutil.rmtree(floor)
        shutil.rmtree(base / "moved")
        env = {**os.environ, "SAFEHOLD_REPOSITORY": str(base / "repo"), "SAFEHOLD_PASSWORD": "x"}
        timed("safehold init", [*SAFEHOLD, "init"], env)
        backup = [*SAFEHOLD, "mysql", "backup", *conn, "--tmpdir", str(base), "--type"]
        full = timed("safehold mysql backup --type full", [*backup, "full"], env)
        server.sql("UPDATE b.t SET r = random_bytes(128) WHERE id % 100 = 0", "b")
        incr = timed(
            "safehold mysql backup --type incr (1 % of rows changed)", [*backup, "incr"], env
        )
        again = timed("safehold mysql backup --type full (again)", [*backup, "full"], env)
        server.stop()
        timed(
            "safehold mysql restore (full + incr, prepared)",
            [*SAFEHOLD, "mysql", "restore", incr["snapshot_id"], "--to-dir", str(base / "r")],
            env,
        )
        for name, doc in (("full", full), ("incr", incr), ("second full", again)):
            print(f"\nadded by {name}: {doc['data_added'] / 2**20:.0f} MiB", end="")
        print()


if __name__ == "__main__":
    main()
