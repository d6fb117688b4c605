"""Service RTO: `safehold recover` of a PostgreSQL database (pgbench) plus a directory of
user files, against pgBackRest's restore of the same database followed by restic's restore
of the same files, on the same data in one run; and the skew of consistent cuts.

    .venv/bin/python bench/recover_run.py --scale 130 --files-mb 1024 --wal-seconds 600
    .venv/bin/python bench/recover_run.py --scale 5 --files-mb 50 --wal-seconds 20   # quick

Runs as root; the cluster runs as postgres with WAL archived by both tools at once (one
archive_command running `safehold pg wal-push` then `pgbackrest archive-push`). Each tool
takes a full base backup (safehold through the policy's job commands, pgBackRest
`--type=full`, restic of the files), then pgbench runs for --wal-seconds so that the
restores replay that much WAL. Measured: wall time from the start of the restore to a
cluster out of recovery (and, for safehold, the health checks passed) plus the files,
and safehold's peak RSS (GNU time). pgBackRest: zstd 3, AES-256-CBC, process-max 2;
restic 0.14 with its default compression (none in format 1).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.policy import files_source, postgres_source, repository_table, run_job
from tests.sources.pg_server import (
    PG_BIN,
    PgCluster,
    free_port,
    init_cluster,
    postgres_dir,
    write_safehold_wrapper,
)

PASSWORD = "safehold-bench-password"
RECOVERY = """
[services.bench.recovery]
safehold_command = "{wrapper}"
[[services.bench.recovery.checks]]
sql = "SELECT EXISTS (SELECT 1 FROM pgbench_accounts)"
source = "db"
expect = "t"
"""


def policy(repo: Path, password: Path, cluster: PgCluster, files: Path, wrapper: Path) -> str:
    """The service: the pgbench database and the files, recovered with a health check."""
    return (
        repository_table(repo, password)
        + "[services.bench]\n"
        + postgres_source("bench", cluster.pgdata, cluster.sockdir, cluster.port)
        + files_source("bench", files)
        + RECOVERY.format(wrapper=wrapper)
    )


def run(*argv: str | os.PathLike[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(list(map(str, argv)), capture_output=True, env=env, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def timed(*argv: str | os.PathLike[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    run(*argv, env=env)
    return round(time.monotonic() - t0, 2)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "RESTIC_"))}
    return env | extra


def make_files(root: Path, megabytes: int) -> None:
    """Half random (incompressible), half text, in files of 1 MiB in 32 directories."""
    for i in range(megabytes):
        d = root / f"user{i % 32:02d}"
        d.mkdir(parents=True, exist_ok=True)
        if i % 2:
            data = os.urandom(1 << 20)
        else:
            data = (f"line {i} of an upload, some words that repeat\n" * 24000).encode()[: 1 << 20]
        (d / f"upload-{i:05d}.bin").write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=130, help="pgbench scale (130: ~2 GB)")
    parser.add_argument("--files-mb", type=int, default=1024)
    parser.add_argument("--wal-seconds", type=int, default=600)
    parser.add_argument("--cuts", type=int, default=3, help="consistent cuts to time")
    parser.add_argument(
        "--compare-untuned",
        action="store_true",
        help="first recover with --no-tune-replay (the replay as configured) into another sandbox",
    )
    parser.add_argument(
        "--pgbackrest-async-get",
        action="store_true",
        help="pgBackRest's restore_command prefetches WAL (archive-async for archive-get)",
    )
    parser.add_argument(
        "--keep-logs", type=Path, help="copy the restored servers' logs (with timestamps) here"
    )
    args = parser.parse_args()
    results: dict[str, Any] = vars(args).copy()
    with postgres_dir("safehold-recover-bench-") as base:
        results |= bench(base, args)
    print(json.dumps(results, indent=1, default=str))


def bench(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    repo, password, restic_repo = base / "repo", base / "password", base / "restic"
    password.write_text(PASSWORD)
    run(sys.executable, "-m", "safehold", "--repo", repo, "--password-file", password, "init",
        env=clean_env())  # fmt: skip
    run("chown", "-R", "postgres:postgres", repo, password)
    wrapper = write_safehold_wrapper(base / "safehold")
    conf = base / "pgbackrest.conf"
    pgbr = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={conf}", "--stanza=bench"]
    archive = (
        f"{wrapper} --repo {repo} --password-file {password} --quiet pg wal-push %p"
        f" && pgbackrest --config={conf} --stanza=bench archive-push %p"
    )
    cluster = init_cluster(
        base, "data", archive, fsync="on", max_wal_size="1GB", shared_buffers="128MB"
    )
    conf.write_text(
        f"[global]\nrepo1-path={base}/pgbr\nrepo1-cipher-type=aes-256-cbc\n"
        f"repo1-cipher-pass={PASSWORD}\ncompress-type=zst\ncompress-level=3\nprocess-max=2\n"
        f"start-fast=y\nlog-level-console=warn\nlog-path={base}/log\nlock-path={base}/lock\n"
        f"[bench]\npg1-path={cluster.pgdata}\npg1-socket-path={base}\npg1-port={cluster.port}\n"
    )
    if args.pgbackrest_async_get:  # archive-get fetches ahead into a spool, as safehold does
        with open(conf, "a") as f:
            f.write(
                f"[global:archive-get]\narchive-async=y\nspool-path={base}/pgbr-spool\n"
                "archive-get-queue-max=1GiB\n"
            )
    run("chown", "postgres:postgres", conf)
    files = base / "files"
    make_files(files, args.files_mb)
    cluster.start()
    restored: list[PgCluster] = []
    try:
        run(*pgbr, "stanza-create")
        out["pgbench_init_seconds"] = timed(
            PG_BIN / "pgbench", *cluster.client_args(), "-i", "-q", "-s", args.scale, "postgres"
        )
        out["db_bytes"] = int(cluster.sql("SELECT pg_database_size('postgres')")[0][0])
        config = base / "safehold.toml"
        config.write_text(policy(repo, password, cluster, files, wrapper))
        out["backup_seconds"] = backups(config, pgbr, files, restic_repo)
        out["pgbench"] = run(
            PG_BIN / "pgbench", *cluster.client_args(), "-c", "4", "-j", "2",
            "-T", args.wal_seconds, "postgres",
        ).splitlines()[-1:]  # fmt: skip
        cluster.wait_archived(timeout=3600)
        out["cuts"] = cuts(config, args.cuts)
        if args.compare_untuned:
            out["safehold_untuned"], target = recover(config, base / "untuned", "--no-tune-replay")
            target.stop("fast")  # its memory and its CPU back before the measured runs
        out["safehold"], target = recover(config, base / "sandbox")
        restored.append(target)
        out["peers"], target = peers(base, pgbr, restic_repo)
        restored.append(target)
        s, p = out["safehold"]["seconds"], out["peers"]["seconds"]
        out["ratio_safehold_to_peers"] = round(s / p, 3)
        if args.keep_logs:
            keep_logs(args.keep_logs, base, restored)
    finally:
        for c in restored:
            c.stop("immediate")
        cluster.stop("immediate")
    return out


def keep_logs(keep: Path, base: Path, restored: list[PgCluster]) -> None:
    """The restored servers' logs (safehold's, each run's, and pgBackRest's) for profiling."""
    keep.mkdir(parents=True, exist_ok=True)
    for log in base.glob("*/**/safehold-recovery.log"):
        shutil.copy(log, keep / f"{log.relative_to(base).parts[0]}-safehold-recovery.log")
    shutil.copy(restored[-1].log, keep / "pgbackrest-restored.log")


def backups(config: Path, pgbr: list[str], files: Path, restic_repo: Path) -> dict[str, float]:
    took: dict[str, float] = {}
    for target, schedule in (("bench/db", "full"), ("bench/files", "backup")):
        t0 = time.monotonic()
        run_job(config, "backup", target, schedule, env=clean_env(), timeout=3600)
        took[f"safehold {target}"] = round(time.monotonic() - t0, 2)
    took["pgbackrest full"] = timed(*pgbr, "--type=full", "backup")
    restic = clean_env(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(restic_repo))
    run("restic", "init", env=restic)
    took["restic files"] = timed("restic", "backup", files, env=restic)
    return took


def cuts(config: Path, count: int) -> list[float]:
    """The skew of ``count`` consistent cuts (files walked, then the WAL marked)."""
    skews = []
    for _ in range(count):
        doc = json.loads(
            run(
                sys.executable,
                "-m",
                "safehold",
                "--json",
                "cut",
                "bench",
                "-c",
                config,
                env=clean_env(),
            )
        )
        skews.append(doc["skew_seconds"])
    return skews


def recover(config: Path, root: Path, *more: str) -> tuple[dict[str, Any], PgCluster]:
    """`recover --latest` into a sandbox under GNU time; its summary's figures."""
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss_kib=%M", sys.executable, "-m", "safehold", "--json",
         "recover", "bench", "-c", str(config), "--latest", "--target-root", str(root), *more],
        capture_output=True, text=True, env=clean_env(),
    )  # fmt: skip
    seconds = round(time.monotonic() - t0, 2)
    if proc.returncode != 0:
        raise SystemExit(f"recover failed ({proc.returncode}): {proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.splitlines()[-1])
    rss = int(proc.stderr.rsplit("maxrss_kib=", 1)[1].split()[0])
    db = next(s for s in summary["sources"] if s["name"] == "db")
    steps = {}
    for step in summary["steps"]:
        key = step["step"] + (f" {step['source']}" if step["source"] else "")
        steps[key] = step["seconds"]
    result = {
        "seconds": seconds,
        "rto_seconds": summary["rto_seconds"],
        "peak_rss_mib": round(rss / 1024, 1),
        "steps": steps,
        "replay_seconds": db["replay_seconds"],
        "restart_seconds": db["restart_seconds"],
        "load_average_at_start": round(load, 2),
    }
    return result, PgCluster(Path(db["target"]), int(db["port"]), config.parent)


def peers(base: Path, pgbr: list[str], restic_repo: Path) -> tuple[dict[str, Any], PgCluster]:
    """pgBackRest's restore, the cluster started and out of recovery, then restic's."""
    target = PgCluster(base / "pgbr-restored", free_port(), base)
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    run(*pgbr, f"--pg1-path={target.pgdata}", "--archive-mode=off", "restore")
    with open(target.pgdata / "postgresql.auto.conf", "a") as f:
        f.write(f"port = {target.port}\n")
    target.start()
    while target.sql("SELECT pg_is_in_recovery()")[0][0]:
        time.sleep(0.1)
    pg_seconds = time.monotonic() - t0
    restic = clean_env(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(restic_repo))
    files_seconds = timed("restic", "restore", "latest", "--target", base / "restic-restored",
                          env=restic)  # fmt: skip
    return {
        "seconds": round(pg_seconds + files_seconds, 2),
        "pgbackrest_restore_and_recovery": round(pg_seconds, 2),
        "restic_restore": files_seconds,
        "load_average_at_start": round(load, 2),
    }, target


if __name__ == "__main__":
    main()
