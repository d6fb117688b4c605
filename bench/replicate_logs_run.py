"""What a replica's log follower costs per poll, and how fast a new log reaches the replica.

Two buckets of one `weed mini` server stand for the primary and the replica. The primary
holds N archived WAL objects (sealed as `pg wal-push` seals them, 16 KiB each: the listing,
not the bytes, is what an idle poll pays for). Timed in-process with `LogFollower`:

- the first poll (checks the replica, copies keys, config and every log),
- idle polls (nothing new: one listing of wal/ and one of binlog/ on the primary),
- a poll that finds one new segment (the follower's copy, verified).

    .venv/bin/python bench/replicate_logs_run.py --logs 1000 5000 [--polls 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import S3Server, run_seaweedfs  # noqa: E402

from safehold.ops.replicate_logs import LogFollower  # noqa: E402
from safehold.repo.keys import KdfParams  # noqa: E402
from safehold.repo.repository import Repository  # noqa: E402
from safehold.storage import open_store  # noqa: E402

PASSWORD = b"bench password"
SEGMENT = 16 << 10
SYSTEM_ID = "7311000000000000001"


def segment_key(n: int) -> str:
    return f"wal/{SYSTEM_ID}/00000001{n >> 8:08X}{n & 0xFF:08X}"


def run(server: S3Server, logs: int, polls: int) -> dict[str, float]:
    tag = f"{logs}-{time.monotonic_ns()}"
    client = server.client()
    for bucket in (f"primary-{tag}", f"replica-{tag}"):
        client.create_bucket(Bucket=bucket)
    primary = Repository.init(
        open_store(server.location(f"primary-{tag}")),
        PASSWORD,
        KdfParams(memory=256, iterations=1, parallelism=1),
    )
    body = os.urandom(SEGMENT)
    for n in range(logs):
        primary.put_log_file(segment_key(n), body)
    follower = LogFollower(primary, open_store(server.location(f"replica-{tag}")), 8)
    started = time.monotonic()
    first = follower.poll()
    first_seconds = time.monotonic() - started
    assert first.ok and first.copied_by_group["wal"] == logs, first.errors
    idle = []
    for _ in range(polls):
        started = time.monotonic()
        assert follower.poll().copied == 0
        idle.append(time.monotonic() - started)
    primary.put_log_file(segment_key(logs), body)
    started = time.monotonic()
    assert follower.poll().copied == 1
    return {
        "first": first_seconds,
        "idle": statistics.median(idle),
        "one_new": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp,
        run_seaweedfs(Path(tmp)) as server,
    ):
        os.environ.update(server.env())
        print("| logs on the primary | first poll (copies all) | idle poll | one new log |")
        print("|---|---|---|---|")
        for logs in args.logs:
            r = run(server, logs, args.polls)
            print(
                f"| {logs} | {r['first']:.2f} s | {r['idle'] * 1000:.0f} ms"
                f" | {r['one_new'] * 1000:.0f} ms |"
            )


if __name__ == "__main__":
    main()
