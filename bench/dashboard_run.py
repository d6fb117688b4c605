"""The dashboard's response times with a long history: the overview page and
/api/v1/status (and the other pages) with RUNS job runs, SNAPSHOTS snapshots and DRILLS
stored drill reports.

One repository gets SNAPSHOTS snapshots of SERVICES services with two sources each (one
real backup, its snapshot document saved again under other times and tags: what is
measured is listing and reading them, not backing up); the job history gets RUNS runs
spread over 30 days (one in ten failed). ``safehold serve`` then serves the policy and
each page is requested WARMUP times, then REPEAT times timed: median, 90th percentile and
the slowest, in milliseconds, from sending the request to the last byte of the answer.

    python bench/dashboard_run.py --work /tmp/dash-bench    # 10,000 runs, 1,000 snapshots, 100 drills
    python bench/dashboard_run.py --work /tmp/dash-bench --runs 100000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from safehold.archive.snapshotter import BackupRequest, run_backup
from safehold.dr.drill.report import DrillReport
from safehold.dr.drill.store import store_in_repository
from safehold.repo.keys import KdfParams
from safehold.repo.repository import Repository
from safehold.repo.snapshot import format_time
from safehold.service.history import JobHistory
from safehold.storage import LocalStore

PASSWORD = "safehold-bench-password"
TOKEN = "bench-viewer-token-0123456789"
SERVICES = 5
SOURCES = ("files", "uploads")


def build_repository(work: Path, snapshots: int, now: datetime) -> None:
    data = work / "data"
    data.mkdir(parents=True)
    for i in range(50):
        (data / f"f{i:03}").write_bytes(random.Random(i).randbytes(4096))
    repo = Repository.init(LocalStore(work / "repo"), PASSWORD.encode(), KdfParams(256, 1, 1))
    first = run_backup(repo, BackupRequest(paths=[str(data)], tags=[])).snapshot
    for n in range(snapshots):
        service, source = f"svc{n % SERVICES}", SOURCES[(n // SERVICES) % len(SOURCES)]
        moment = now - timedelta(minutes=30 * (snapshots - n) / SERVICES)
        repo.save_snapshot(
            replace(
                first,
                time=format_time(moment),
                tags=[f"service={service}", f"source={service}/{source}"],
                id="",
            )
        )
    repo.delete_snapshot(first.id)


def build_drills(work: Path, drills: int, now: datetime) -> None:
    """DRILLS stored drill reports (made up, as the drill engine stores them), spread over
    the services and the last 30 days."""
    repo = Repository.open(LocalStore(work / "repo"), PASSWORD.encode())
    rng = random.Random(2)
    for n in range(drills):
        started = now - timedelta(days=30) + timedelta(days=30) * n / max(drills, 1)
        rto = rng.uniform(30, 900)
        store_in_repository(
            DrillReport(
                id=started.strftime("%Y%m%dT%H%M%S%fZ"),
                service=f"svc{n % SERVICES}",
                started=started.isoformat(),
                point_spec="latest",
                point=(started - timedelta(minutes=5)).isoformat(),
                ended=(started + timedelta(seconds=rto)).isoformat(),
                outcome="passed" if rng.random() < 0.9 else "check failed",
                rto_seconds=rto,
                rpo_seconds=rng.uniform(0, 600),
                objectives={"rto": 3600.0, "rpo": 1800.0},
            ),
            repo,
        )


def build_history(state: Path, runs: int, now: datetime) -> None:
    history = JobHistory(state / "history.sqlite")
    rng = random.Random(1)
    step = timedelta(days=30) / runs
    for n in range(runs):
        service, source = f"svc{n % SERVICES}", SOURCES[(n // SERVICES) % len(SOURCES)]
        started = now - timedelta(days=30) + step * n
        run_id = history.start(
            f"{service}/{source} backup",
            "backup",
            f"{service}/{source}",
            "backup",
            started,
            now=started,
        )
        failed = rng.random() < 0.1
        history.finish(
            run_id,
            "failed" if failed else "success",
            bytes_added=None if failed else rng.randrange(1 << 20),
            error="exit 1: cannot reach the store" if failed else None,
            now=started + timedelta(seconds=rng.uniform(1, 60)),
        )
    history.close()


def write_policy(work: Path) -> Path:
    (work / "password").write_text(PASSWORD)
    (work / "viewer.token").write_text(TOKEN)
    services = "".join(
        f"""
[services.svc{i}]
objectives.rpo = "1h"
"""
        + "".join(
            f"""[[services.svc{i}.sources]]
name = "{source}"
kind = "files"
options.paths = ["{work / "data"}"]
schedules.backup = "0 * * * *"
"""
            for source in SOURCES
        )
        for i in range(SERVICES)
    )
    config = work / "safehold.toml"
    config.write_text(
        f"""[repositories.main]
location = "{work / "repo"}"
password_file = "{work / "password"}"
{services}
[daemon]
state_dir = "{work / "state"}"
http = "127.0.0.1:{free_port()}"
status_interval = "1m"
[daemon.http_auth]
viewer_token_file = "{work / "viewer.token"}"
"""
    )
    return config


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed_get(url: str) -> float:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        assert response.status == 200, url
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=1_000)
    parser.add_argument("--drills", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    now = datetime.now(UTC)
    started = time.monotonic()
    build_repository(args.work, args.snapshots, now)
    build_drills(args.work, args.drills, now)
    (args.work / "state").mkdir()
    build_history(args.work / "state", args.runs, now)
    config = write_policy(args.work)
    print(f"built in {time.monotonic() - started:.1f} s", file=sys.stderr)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "safehold", "--json", "status", "-c", str(config)],
        env=env,
        capture_output=True,
        check=False,
    )
    status_s = time.monotonic() - started
    log = open(args.work / "serve.log", "wb")  # noqa: SIM115 - open while it serves
    server = subprocess.Popen(
        [sys.executable, "-m", "safehold", "serve", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = "http://" + config.read_text().split('http = "')[1].split('"')[0]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                timed_get(base + "/api/v1/status")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        pages = [
            "/",
            "/api/v1/status",
            "/services/svc0",
            "/api/v1/services/svc0/exposure",
            "/jobs",
            "/api/v1/jobs?limit=30",
            "/services/svc0/snapshots",
            "/api/v1/drills",
        ]
        print(
            f"{args.runs} job runs, {args.snapshots} snapshots, {args.drills} drills;"
            " `safehold status --json`"
            f" took {status_s:.2f} s (the work serve and the daemon do in the background)\n"
        )
        print("| page | median ms | p90 ms | max ms |")
        print("|---|---|---|---|")
        for page in pages:
            for _ in range(args.warmup):
                timed_get(base + page)
            times = sorted(timed_get(base + page) for _ in range(args.repeat))
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"| `{page}` | {statistics.median(times):.1f} | {p90:.1f} | {times[-1]:.1f} |")
        # the drill list is kept 5 s (SNAPSHOT_TTL): the first overview after that lists
        # and reads every report again
        time.sleep(6)
        print(f"\n`/` once the drill cache expired: {timed_get(base + '/'):.1f} ms")
    finally:
        server.terminate()
        server.wait(30)
        log.close()


if __name__ == "__main__":
    main()
