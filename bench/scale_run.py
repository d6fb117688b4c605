"""forget, prune and check on a repository of many snapshots and over a million blobs.

The same data goes into a safehold and a restic repository: SNAPSHOTS backups, each of
a new directory of FILES small random files (one blob each in both tools), so the
repositories end with SNAPSHOTS x FILES data blobs. safehold's backups run in this process
through its API (the repository stays open: building is not what is measured); restic's
run as its CLI. Then each tool's `forget --keep-last KEEP`, `prune` and `check` run as a
child process, timed with os.wait4 for wall time, CPU time and peak RSS.

    python bench/scale_run.py --work /tmp/scale                # 1,000 x 1,000 (about 25 min)
    python bench/scale_run.py --work /tmp/scale --snapshots 50 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from safehold.archive.snapshotter import BackupRequest, run_backup
from safehold.repo.keys import KdfParams
from safehold.repo.repository import Repository
from safehold.storage import LocalStore

PASSWORD = "safehold-bench-password"
KDF = KdfParams(memory=65536, iterations=3, parallelism=2)


@dataclass
class Timed:
    tool: str
    phase: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float


def make_files(directory: Path, files: int, size: int, rng: random.Random) -> None:
    directory.mkdir(parents=True)
    for i in range(files):
        (directory / f"f{i:05}").write_bytes(rng.randbytes(size))


def build(work: Path, snapshots: int, files: int, size: int) -> None:
    """Both repositories from the same directories (snapshot n's files come from seed n);
    safehold in this thread, restic's CLI from another, so the build takes the longer of
    the two rather than their sum."""
    repo = Repository.init(LocalStore(work / "safehold"), PASSWORD.encode(), KDF)
    subprocess.run(["restic", "init", "-q"], env=restic_env(work), check=True)
    restic = threading.Thread(target=build_restic, args=(work, snapshots, files, size))
    restic.start()
    started = time.monotonic()
    for n in range(snapshots):
        directory = work / "data-safehold" / f"s{n:05}"
        make_files(directory, files, size, random.Random(n))
        run_backup(repo, BackupRequest(paths=[str(directory)], tags=[], hostname="bench"))
        shutil.rmtree(directory)
        if n % 100 == 99:
            print(
                f"safehold: {n + 1} snapshots, {time.monotonic() - started:.0f} s", file=sys.stderr
            )
    restic.join()


def build_restic(work: Path, snapshots: int, files: int, size: int) -> None:
    started = time.monotonic()
    for n in range(snapshots):
        directory = work / "data-restic" / f"s{n:05}"
        make_files(directory, files, size, random.Random(n))
        subprocess.run(
            ["restic", "backup", "-q", "--host", "bench", str(directory)],
            env=restic_env(work),
            check=True,
        )
        shutil.rmtree(directory)
        if n % 100 == 99:
            print(f"restic: {n + 1} snapshots, {time.monotonic() - started:.0f} s", file=sys.stderr)


def restic_env(work: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": str(work / "restic"), "RESTIC_PASSWORD": PASSWORD}


def safehold_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SAFEHOLD_REPOSITORY": str(work / "safehold"),
        "SAFEHOLD_PASSWORD": PASSWORD,
    }


def timed(tool: str, phase: str, argv: list[str], env: dict[str, str]) -> Timed:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{tool} {phase} failed: {err[-2000:]}")
    return Timed(tool, phase, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def measure(work: Path, keep: int) -> list[Timed]:
    safehold = [sys.executable, "-m", "safehold", "-q"]
    phases = {
        "check (before)": (["check"], ["check"]),
        # one group per host: every snapshot has its own path, so the default grouping
        # (host and paths) would keep them all
        "forget": (
            ["forget", "--keep-last", str(keep), "--group-by", "host"],
            ["forget", "--keep-last", str(keep), "--group-by", "host"],
        ),
        "prune": (["prune"], ["prune"]),
        "check (after)": (["check"], ["check"]),
    }
    results = []
    for phase, (ours, theirs) in phases.items():
        results.append(timed("safehold", phase, [*safehold, *ours], safehold_env(work)))
        results.append(timed("restic", phase, ["restic", "-q", *theirs], restic_env(work)))
    return results


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def report(results: list[Timed], args: argparse.Namespace, sizes: dict[str, int]) -> str:
    lines = [
        f"{args.snapshots} snapshots x {args.files} files of {args.size} B "
        f"({args.snapshots * args.files:,} data blobs), forget --keep-last {args.keep}",
        "",
        "| phase | safehold s | restic s | ratio | safehold CPU s | restic CPU s "
        "| safehold peak MiB | restic peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {(r.tool, r.phase): r for r in results}
    for phase in dict.fromkeys(r.phase for r in results):
        ours, theirs = by[("safehold", phase)], by[("restic", phase)]
        lines.append(
            f"| {phase} | {ours.wall_s:.1f} | {theirs.wall_s:.1f} | "
            f"{ours.wall_s / theirs.wall_s:.2f} | {ours.cpu_s:.1f} | {theirs.cpu_s:.1f} | "
            f"{ours.peak_rss_mib:.0f} | {theirs.peak_rss_mib:.0f} |"
        )
    lines.append("")
    lines.append(
        "repository size before prune: "
        + ", ".join(f"{tool} {size / 2**20:.0f} MiB" for tool, size in sizes.items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--keep", type=int, default=100)
    parser.add_argument("--reuse", action="store_true", help="Measure repositories already built.")
    args = parser.parse_args()
    work: Path = args.work
    if not args.reuse:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        build(work, args.snapshots, args.files, args.size)
        # Measure from a fresh, small process: a child forked from this one (which holds
        # the million-blob index it built) starts with this RSS as its peak (Linux keeps
        # the high-water mark across exec), hiding any child that needs less.
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:], "--reuse"])
    sizes = {"safehold": size_of(work / "safehold"), "restic": size_of(work / "restic")}
    results = measure(work, args.keep)
    text = report(results, args, sizes)
    print(text)
    (work / "results.json").write_text(json.dumps([r.__dict__ for r in results], indent=1))


if __name__ == "__main__":
    main()
