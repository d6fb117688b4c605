"""PostgreSQL benchmark: WAL archiving throughput under pgbench, base backup and restore times.

    .venv/bin/python bench/pg_run.py --scale 20 --seconds 60 --mode sync
    .venv/bin/python bench/pg_run.py --scale 20 --seconds 60 --mode async
    .venv/bin/python bench/pg_run.py --mode cp            # archive_command = cp, the floor

Runs as root; the cluster runs as postgres (fsync on, default checkpoints), the repository
uses the real KDF (Argon2id 64 MiB) as production does. pgbench runs at full speed
(-c 4 -j 2, TPC-B); archiving keeps up when the archiver's backlog stays bounded during the
run and drains right after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sources.pg_server import (
    PG_BIN,
    init_cluster,
    postgres_dir,
    write_safehold_wrapper,
)

PASSWORD = "safehold-bench-password"
SEGMENT = 16 << 20


def safehold(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    return subprocess.run(
        [sys.executable, "-m", "safehold", *args], capture_output=True, check=True, env=env
    )


def timed(*args: str) -> tuple[float, dict[str, object]]:
    t0 = time.monotonic()
    proc = safehold("--json", *args)
    return time.monotonic() - t0, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--mode", choices=("sync", "async", "async-light", "cp"), default="sync")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--skip-backup", action="store_true")
    parser.add_argument("--async-commit", action="store_true", help="synchronous_commit=off")
    parser.add_argument("--tool", choices=("safehold", "pgbackrest"), default="safehold")
    args = parser.parse_args()
    if args.tool == "pgbackrest":
        run_pgbackrest(args)
        return
    results: dict[str, object] = {"mode": args.mode, "scale": args.scale, "seconds": args.seconds}
    with postgres_dir("safehold-pgbench-") as base:
        repo, pwfile, spool = base / "repo", base / "password", base / "spool"
        pwfile.write_text(PASSWORD)
        safehold("--repo", str(repo), "--password-file", str(pwfile), "init")
        subprocess.run(["chown", "-R", "postgres:postgres", str(repo), str(pwfile)], check=True)
        wrapper = write_safehold_wrapper(base / "safehold")
        light = base / "spool-wait"  # python -m safehold.sources.postgres.spool: no CLI start-up
        light.write_text(
            wrapper.read_text().replace("-m safehold", "-m safehold.sources.postgres.spool")
        )
        light.chmod(0o755)
        spool.mkdir()
        subprocess.run(["chown", "postgres:postgres", str(spool)], check=True)
        common = ["--repo", str(repo), "--password-file", str(pwfile)]
        g = " ".join(common)
        command = {
            "sync": f"{wrapper} {g} --quiet pg wal-push %p",
            "async": f"{wrapper} --quiet pg wal-push --spool {spool} %p",
            "async-light": f"{light} {spool} %p",
            "cp": f"test ! -f {base}/cp/%f && cp %p {base}/cp/%f",
        }[args.mode]
        (base / "cp").mkdir()
        subprocess.run(["chown", "postgres:postgres", str(base / "cp")], check=True)
        cluster = init_cluster(
            base,
            "data",
            command,
            fsync="on",
            max_wal_size="1GB",
            synchronous_commit="off" if args.async_commit else "on",
            track_commit_timestamp="off",
            shared_buffers="128MB",
        )
        cluster.start()
        pusher = None
        if args.mode.startswith("async"):
            pusher = subprocess.Popen(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(wrapper),
                    *common,
                    "pg",
                    "wal-pusher",
                    "--spool",
                    str(spool),
                    "--pgdata",
                    str(cluster.pgdata),
                ],
                stderr=subprocess.PIPE,
            )
        try:
            lsn0 = cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
            t0 = time.monotonic()
            subprocess.run(
                [
                    str(PG_BIN / "pgbench"),
                    *cluster.client_args(),
                    "-i",
                    "-q",
                    "-s",
                    str(args.scale),
                    "postgres",
                ],
                check=True,
                capture_output=True,
            )
            init_time = time.monotonic() - t0
            lsn1 = cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
            backlog = len(list((cluster.pgdata / "pg_wal" / "archive_status").glob("*.ready")))
            cluster.wait_archived(timeout=1800)
            total = time.monotonic() - t0
            segments = (int(lsn1) - int(lsn0)) / SEGMENT
            results["bulk_load"] = {
                "seconds": round(init_time, 1),
                "wal_mb_per_s": round((int(lsn1) - int(lsn0)) / init_time / 1e6, 1),
                "segments": round(segments, 1),
                "backlog_at_end": backlog,
                "all_archived_after_s": round(total, 1),
                "archive_segments_per_s": round(segments / total, 2),
            }
            if not args.skip_backup and args.mode != "cp":
                dt, full = timed(
                    *common,
                    "pg",
                    "backup",
                    "--type",
                    "full",
                    "--pgdata",
                    str(cluster.pgdata),
                    "--dsn",
                    cluster.conninfo,
                )
                results["backup_full"] = {
                    "seconds": round(dt, 2),
                    "bytes": full["total_bytes_processed"],
                    "added": full["data_added"],
                }
            lsn0 = cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
            archived0 = cluster.sql("SELECT archived_count FROM pg_stat_archiver")[0][0]
            t0 = time.monotonic()
            bench = subprocess.run(
                [
                    str(PG_BIN / "pgbench"),
                    *cluster.client_args(),
                    *(["-M", "prepared"]),
                    "-c",
                    str(args.clients),
                    "-j",
                    "2",
                    "-T",
                    str(args.seconds),
                    "postgres",
                ],
                check=True,
                capture_output=True,
            )
            run_time = time.monotonic() - t0
            tps = [line for line in bench.stdout.decode().splitlines() if line.startswith("tps")]
            lsn1 = cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
            archived1 = cluster.sql("SELECT archived_count FROM pg_stat_archiver")[0][0]
            backlog = len(list((cluster.pgdata / "pg_wal" / "archive_status").glob("*.ready")))
            t1 = time.monotonic()
            cluster.wait_archived(timeout=1800)
            drain = time.monotonic() - t1
            segments = (int(lsn1) - int(lsn0)) / SEGMENT
            results["wal"] = {
                "pgbench": tps[0] if tps else "",
                "wal_mb_per_s": round((int(lsn1) - int(lsn0)) / run_time / 1e6, 1),
                "segments_generated": round(segments, 1),
                "segments_archived_during_run": archived1 - archived0,
                "archived_per_s_during_run": round((archived1 - archived0) / run_time, 2),
                "backlog_at_end": backlog,
                "drain_seconds": round(drain, 1),
            }
            if not args.skip_backup and args.mode != "cp":
                dt, incr = timed(
                    *common,
                    "pg",
                    "backup",
                    "--type",
                    "incr",
                    "--pgdata",
                    str(cluster.pgdata),
                    "--dsn",
                    cluster.conninfo,
                )
                results["backup_incr"] = {
                    "seconds": round(dt, 2),
                    "unchanged_files": incr["files_unmodified"],
                    "added": incr["data_added"],
                }
                from tests.sources.pg_server import PgCluster, free_port

                target = PgCluster(base / "restored", free_port(), base)
                dt, res = timed(
                    *common,
                    "pg",
                    "restore",
                    "--target-dir",
                    str(target.pgdata),
                    "--port",
                    str(target.port),
                    "--no-archive",
                    "--safehold-command",
                    str(wrapper),
                    "--start",
                    "--connect-host",
                    str(base),
                )
                results["restore_latest"] = {
                    "seconds": round(dt, 2),
                    "restore_files_seconds": res["restore_seconds"],
                    "recovery_seconds": res["recovery_seconds"],
                }
                target.stop()
            results["repo_bytes"] = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
        finally:
            cluster.stop()
            if pusher is not None:
                pusher.terminate()
                pusher.wait()
    print(json.dumps(results, indent=1))


def _wal_phases(cluster: Any, results: dict[str, object], scale: int) -> None:
    """Bulk load (pgbench -i): WAL made vs archived."""
    lsn = lambda: int(cluster.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0])  # noqa: E731
    ready = lambda: len(list((cluster.pgdata / "pg_wal" / "archive_status").glob("*.ready")))  # noqa: E731
    lsn0, t0 = lsn(), time.monotonic()
    subprocess.run(
        [str(PG_BIN / "pgbench"), *cluster.client_args(), "-i", "-q", "-s", str(scale), "postgres"],
        check=True,
        capture_output=True,
    )
    load, lsn1, backlog = time.monotonic() - t0, lsn(), ready()
    cluster.wait_archived(timeout=1800)
    total = time.monotonic() - t0
    results["bulk_load"] = {
        "seconds": round(load, 1),
        "wal_mb_per_s": round((lsn1 - lsn0) / load / 1e6, 1),
        "segments": round((lsn1 - lsn0) / SEGMENT, 1),
        "backlog_at_end": backlog,
        "all_archived_after_s": round(total, 1),
        "archive_segments_per_s": round((lsn1 - lsn0) / SEGMENT / total, 2),
    }


def run_pgbackrest(args: argparse.Namespace) -> None:
    """The same phases with pgBackRest (zstd 3, AES-256-CBC, process-max 2)."""
    results: dict[str, object] = {"tool": "pgbackrest", "mode": args.mode, "scale": args.scale}
    with postgres_dir("safehold-pgbr-") as base:
        conf = base / "pgbackrest.conf"
        cmd = [
            "runuser",
            "-u",
            "postgres",
            "--",
            "pgbackrest",
            f"--config={conf}",
            "--stanza=bench",
        ]
        archive = f"pgbackrest --config={conf} --stanza=bench archive-push %p"
        cluster = init_cluster(
            base,
            "data",
            archive,
            fsync="on",
            max_wal_size="1GB",
            track_commit_timestamp="off",
            shared_buffers="128MB",
        )
        conf.write_text(
            f"[global]\nrepo1-path={base}/repo\nrepo1-cipher-type=aes-256-cbc\n"
            f"repo1-cipher-pass={PASSWORD}\ncompress-type=zst\ncompress-level=3\nprocess-max=2\n"
            f"start-fast=y\nlog-level-console=warn\nlog-path={base}/log\nspool-path={base}/spool\n"
            f"lock-path={base}/lock\narchive-async={'y' if args.mode.startswith('async') else 'n'}\n"
            f"[bench]\npg1-path={cluster.pgdata}\npg1-socket-path={base}\npg1-port={cluster.port}\n"
        )
        subprocess.run(["chown", "postgres:postgres", str(conf)], check=True)
        cluster.start()
        try:
            subprocess.run([*cmd, "stanza-create"], check=True, capture_output=True)
            _wal_phases(cluster, results, args.scale)
            t0 = time.monotonic()
            subprocess.run([*cmd, "--type=full", "backup"], check=True, capture_output=True)
            results["backup_full"] = {"seconds": round(time.monotonic() - t0, 2)}
            bench = subprocess.run(
                [
                    str(PG_BIN / "pgbench"),
                    *cluster.client_args(),
                    "-M",
                    "prepared",
                    "-c",
                    str(args.clients),
                    "-j",
                    "2",
                    "-T",
                    str(args.seconds),
                    "postgres",
                ],
                check=True,
                capture_output=True,
            )
            results["pgbench"] = [
                x for x in bench.stdout.decode().splitlines() if x.startswith("tps")
            ]
            cluster.wait_archived(timeout=1800)
            t0 = time.monotonic()
            subprocess.run([*cmd, "--type=incr", "backup"], check=True, capture_output=True)
            results["backup_incr"] = {"seconds": round(time.monotonic() - t0, 2)}
            from tests.sources.pg_server import PgCluster, free_port

            target = PgCluster(base / "restored", free_port(), base)
            t0 = time.monotonic()
            subprocess.run(
                [*cmd, f"--pg1-path={target.pgdata}", "--archive-mode=off", "restore"],
                check=True,
                capture_output=True,
            )
            files = time.monotonic() - t0
            with open(target.pgdata / "postgresql.auto.conf", "a") as f:
                f.write(f"port = {target.port}\n")
            target.start()
            while target.sql("SELECT pg_is_in_recovery()")[0][0]:
                time.sleep(0.1)
            results["restore_latest"] = {
                "seconds": round(time.monotonic() - t0, 2),
                "restore_files_seconds": round(files, 2),
            }
            target.stop()
            results["repo_bytes"] = sum(
                p.stat().st_size for p in (base / "repo").rglob("*") if p.is_file()
            )
        finally:
            cluster.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
