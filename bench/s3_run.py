"""Backup and restore throughput to S3 (a local SeaweedFS) against a local directory and restic.

The S3 part of issue 3's "Speed" section. One `weed mini` on loopback (tests/servers.py)
serves every S3 repository. On the same dataset (bench/dataset.py, as bench/run.py makes
it), each round backs up into fresh repositories and restores from them:

- safehold-local   `safehold --repo DIR`                                    (directory store)
- safehold-s3      `safehold --repo s3://BUCKET/PREFIX?endpoint=…`          (--connections default, 4)
- safehold-s3-c8   the same with `--connections 8` (backup and restore)
- restic-s3        restic 0.14 `-r s3:http://127.0.0.1:PORT/BUCKET`

Phase by phase as in run.py: every case's backup, then every case's restore, each a child
process timed with os.wait4 (wall, user+system CPU, peak RSS; run.py's run_timed). Every
restore is checked against the source tree (file count and a SHA-256 of every file,
directory and symlink). The case order is reversed on every other round, and --repeat N
rounds give a minimum and a median per measurement, since the machine is noisy. The
SeaweedFS server shares the machine: its own CPU time per phase is reported too.

Ratios, with the issue's targets: safehold S3 backup time / safehold local backup time
(<= 1.25) and safehold S3 restore time / restic S3 restore time (<= 1.0).

    .venv/bin/python bench/s3_run.py                        # scale 0.3 (~490 MB), 3 rounds
    .venv/bin/python bench/s3_run.py --scale 0.02 --repeat 1   # a quick check
    .venv/bin/python bench/s3_run.py --pin                  # client on CPU 0, server on CPU 1

--pin separates the server's competition for the cores from the client's own cost: every
timed client (local baseline included) runs under `taskset -c 0` and every SeaweedFS thread
is moved to CPU 1, so each side has exactly one core and the S3/local ratio is no longer
inflated by the server's ~10 ms of CPU per MiB stored on the client's cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dataset
import run
from run import MB, MIB, Measurement, Restic, Safehold, Tool, ToolError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import S3Server, run_seaweedfs  # noqa: E402

PHASES = ("backup", "restore")
CLIENT_CPU = 0  # --pin: the timed tool's core
SERVER_CPU = 1  # --pin: SeaweedFS's core
CASE_NAMES = ("safehold-local", "safehold-s3", "safehold-s3-c8", "restic-s3")


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """No AWS or SAFEHOLD settings from the caller's environment leak into a measurement."""
    return {k: v for k, v in env.items() if not k.startswith(("AWS_", "SAFEHOLD_"))}


class SafeholdCase(Safehold):
    """safehold against `location` (a directory or an s3:// URL), with optional --connections."""

    def __init__(
        self,
        binary: str,
        home: Path,
        location: str | None = None,
        server: S3Server | None = None,
        connections: int | None = None,
        pin: list[str] | None = None,
    ) -> None:
        super().__init__(binary, home)
        self.location = location or str(self.repo)
        self.server = server
        self.connections = connections
        self.pin = pin or []

    def env(self) -> dict[str, str]:
        env = clean_env(super().env()) | {"SAFEHOLD_PASSWORD": run.PASSWORD}
        return env | (self.server.env() if self.server else {})

    def base(self) -> list[str]:
        conn = [] if self.connections is None else ["--connections", str(self.connections)]
        return [self.binary, "--repo", self.location, *conn]

    def init_cmd(self) -> list[str]:
        # safehold's default Argon2 parameters, as run.py uses; init is not timed.
        return [*self.base(), "init"]

    def backup_cmd(self, data: Path) -> list[str]:
        return [*self.pin, *self.base(), "--json", "backup", str(data)]

    def restore_cmd(self) -> list[str]:
        target = str(self.restore_dir)
        return [*self.pin, *self.base(), "restore", "latest", "--target", target]


class ResticS3(Restic):
    """restic on the same SeaweedFS, with run.py's repository version and compression."""

    def __init__(
        self, binary: str, home: Path, server: S3Server, bucket: str, pin: list[str] | None = None
    ) -> None:
        super().__init__(binary, home)
        self.server = server
        self.location = f"s3:{server.endpoint}/{bucket}"
        self.pin = pin or []

    def env(self) -> dict[str, str]:
        return clean_env(super().env()) | {
            "AWS_ACCESS_KEY_ID": self.server.access_key,
            "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
        }

    def init_cmd(self) -> list[str]:
        return [self.binary, "-r", self.location, "init", "--repository-version", "2"]

    def backup_cmd(self, data: Path) -> list[str]:
        return [
            *self.pin, self.binary, "-r", self.location, "backup", "--compression", "auto",
            "--json", str(data),
        ]  # fmt: skip

    def restore_cmd(self) -> list[str]:
        restore = ["restore", "latest", "--target", str(self.restore_dir)]
        return [*self.pin, self.binary, "-r", self.location, *restore]


@dataclass
class Case:
    """One configuration; `make(home, round)` builds its tool for one round."""

    name: str
    bucket: str | None  # S3 bucket prefix (one bucket per round), None for a directory
    make: Callable[[Path, int], Tool]


@dataclass
class Sample:
    """One timed phase of one case in one round, plus what the SeaweedFS server spent."""

    case: str
    phase: str
    round: int
    m: Measurement
    server_cpu_s: float | None
    restored_files: int | None = None
    tree_sha256: str | None = None


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def weed_pid(workdir: Path) -> int | None:
    """The `weed mini` that run_seaweedfs started for `workdir` (found by its -dir= flag)."""
    marker = f"-dir={workdir / 'data'}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in argv:
            return int(entry.name)
    return None


def pin_process(pid: int | None, cpu: int) -> None:
    """Move every thread of `pid` to one CPU (threads it starts later inherit it): Go
    spreads a server over all threads, so pinning the main thread alone would not do."""
    if pid is None:
        sys.exit("error: --pin: the SeaweedFS process was not found")
    subprocess.run(
        ["taskset", "--all-tasks", "--cpu-list", "--pid", str(cpu), str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its waited-for children, from /proc."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_hash(digest: dict[str, str]) -> str:
    """One SHA-256 over a whole tree digest (run.tree_digest), for the report."""
    h = hashlib.sha256()
    for rel in sorted(digest):
        h.update(f"{rel}\0{digest[rel]}\n".encode())
    return h.hexdigest()


def file_count(digest: dict[str, str]) -> int:
    return sum(1 for v in digest.values() if v != "dir" and not v.startswith("link:"))


def s3_bytes(server: S3Server, bucket: str) -> int:
    client = server.client()
    return sum(
        obj["Size"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    )


def drop_bucket(server: S3Server, bucket: str) -> None:
    """Empty and delete a bucket, so that rounds do not fill the disk."""
    client = server.client()
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except Exception as exc:  # best effort: a leftover bucket only costs disk space
        print(f"  warning: could not delete bucket {bucket}: {exc}", file=sys.stderr)


def timed_restore(
    tool: Tool, data: Path, expected: dict[str, str], data_bytes: int
) -> tuple[Measurement, int, str]:
    """Restore into an empty dir, verify file count and tree hash against the source."""
    target = tool.restore_dir
    run.fresh_dir(target)
    m = run.run_timed(tool, "restore", tool.restore_cmd(), target, data_bytes)
    actual = run.tree_digest(target / data.relative_to("/"))
    problems = run.tree_diff(expected, actual)
    if file_count(actual) != file_count(expected):
        problems.insert(0, f"{file_count(actual)} files, expected {file_count(expected)}")
    m.verified = not problems
    for problem in problems[:20]:
        print(f"  {tool.name} restore: {problem}", file=sys.stderr)
    shutil.rmtree(target)
    return m, file_count(actual), tree_hash(actual)


def one_round(
    rnd: int,
    cases: list[Case],
    work: Path,
    data: Path,
    server: S3Server,
    server_pid: int | None,
    cold_restore: bool,
    outcome: Outcome,
    pin: bool = False,
) -> None:
    """Init every case (untimed), back each up, restore each; odd rounds run in reverse."""
    data_bytes = dataset.tree_stats(data)[1]
    expected = run.tree_digest(data)
    order = cases if rnd % 2 == 0 else cases[::-1]
    tools: dict[str, Tool] = {}
    for case in order:
        tool = case.make(work / case.name / f"r{rnd}", rnd)
        run.fresh_dir(tool.home)
        for sub in ("logs", "state"):
            (tool.home / sub).mkdir()
        try:
            run.run_timed(tool, "init", tool.init_cmd(), tool.home, 0)
            tools[case.name] = tool
        except ToolError as exc:
            outcome.errors.append(f"round {rnd} {case.name} init: {exc}")
            print(f"  {case.name} init FAILED: {exc}", file=sys.stderr)
    for phase in PHASES:
        for case in order:
            tool = tools.get(case.name)
            if tool is None:
                continue
            if phase == "restore" and cold_restore:
                run.fresh_dir(tool.state_dir)  # no local cache: as on a new host
            if pin:  # again before each phase: threads the server started since keep CPU 1
                pin_process(server_pid, SERVER_CPU)
            before = process_cpu(server_pid)
            try:
                if phase == "backup":
                    m = run.backup(tool, data, "backup", data_bytes)
                    if case.bucket:
                        m.repo_bytes = s3_bytes(server, f"{case.bucket}-r{rnd}")
                    sample = Sample(case.name, phase, rnd, m, None)
                else:
                    m, count, digest = timed_restore(tool, data, expected, data_bytes)
                    sample = Sample(case.name, phase, rnd, m, None, count, digest)
                    if not m.verified:
                        outcome.errors.append(f"round {rnd} {case.name}: restore differs")
            except ToolError as exc:
                outcome.errors.append(f"round {rnd} {case.name} {phase}: {exc}")
                print(f"  {case.name} {phase} FAILED: {exc}", file=sys.stderr)
                del tools[case.name]
                continue
            after = process_cpu(server_pid)
            if before is not None and after is not None:
                sample.server_cpu_s = after - before
            outcome.samples.append(sample)
            print(progress_line(sample), flush=True)
    for case in cases:  # free the disk: the next round starts from fresh repositories
        if case.bucket:
            drop_bucket(server, f"{case.bucket}-r{rnd}")
        shutil.rmtree(work / case.name / f"r{rnd}" / "repo", ignore_errors=True)


def progress_line(s: Sample) -> str:
    m = s.m
    server = "" if s.server_cpu_s is None else f"  server CPU {s.server_cpu_s:6.2f} s"
    repo = "" if m.repo_bytes is None else f"  repo {m.repo_bytes / MIB:7.1f} MiB"
    ok = "" if m.verified is None else ("  ok" if m.verified else "  NOT VERIFIED")
    return (
        f"[{s.round}] {s.case:15s} {s.phase:8s} {m.wall_s:7.2f} s {m.throughput_mb_s:7.1f} MB/s"
        f"  CPU {m.cpu_s:6.2f} s ({100 * m.cpu_s / m.wall_s:3.0f} %)"
        f"  RSS {m.peak_rss_bytes / MIB:5.0f} MiB{server}{repo}{ok}"
    )


def samples_of(outcome: Outcome, case: str, phase: str) -> list[Sample]:
    return [s for s in outcome.samples if s.case == case and s.phase == phase]


def walls(outcome: Outcome, case: str, phase: str) -> list[float]:
    return [s.m.wall_s for s in samples_of(outcome, case, phase)]


def summary_rows(outcome: Outcome, cases: list[Case], data_bytes: int) -> list[tuple[str, ...]]:
    rows = []
    for case in cases:
        for phase in PHASES:
            ss = samples_of(outcome, case.name, phase)
            if not ss:
                rows.append((case.name, phase, "0", *(["failed"] + [""] * 8)))
                continue
            w = [s.m.wall_s for s in ss]
            cpu = statistics.median(s.m.cpu_s for s in ss)
            server = [s.server_cpu_s for s in ss if s.server_cpu_s is not None]
            repo = [s.m.repo_bytes for s in ss if s.m.repo_bytes]
            ok = "" if phase == "backup" else ("yes" if all(s.m.verified for s in ss) else "NO")
            rows.append(
                (
                    case.name,
                    phase,
                    str(len(ss)),
                    f"{min(w):.2f}",
                    f"{statistics.median(w):.2f}",
                    f"{data_bytes / min(w) / MB:.1f}",
                    f"{data_bytes / statistics.median(w) / MB:.1f}",
                    f"{cpu:.2f}",
                    f"{100 * cpu / statistics.median(w):.0f}",
                    f"{max(s.m.peak_rss_bytes for s in ss) / MIB:.0f}",
                    f"{statistics.median(server):.2f}" if server else "",
                    f"{max(repo) / MIB:.1f}" if repo else "",
                    ok,
                )
            )
    return rows


SUMMARY_HEADER = (
    "case", "phase", "runs", "wall s min", "wall s median", "MB/s max", "MB/s median",
    "CPU s median", "CPU %", "peak RSS MiB", "server CPU s", "repo MiB", "verified",
)  # fmt: skip

# (label, numerator (case, phase), denominator (case, phase), target: ratio must be <= it)
RATIOS: list[tuple[str, tuple[str, str], tuple[str, str], float | None]] = [
    (
        "safehold S3 backup / safehold local backup (time)",
        ("safehold-s3", "backup"),
        ("safehold-local", "backup"),
        1.25,
    ),
    (
        "safehold S3 restore / restic S3 restore (time)",
        ("safehold-s3", "restore"),
        ("restic-s3", "restore"),
        1.0,
    ),
    (
        "safehold S3 --connections 8 backup / safehold local backup (time)",
        ("safehold-s3-c8", "backup"),
        ("safehold-local", "backup"),
        1.25,
    ),
    (
        "safehold S3 --connections 8 restore / restic S3 restore (time)",
        ("safehold-s3-c8", "restore"),
        ("restic-s3", "restore"),
        1.0,
    ),
    (
        "safehold S3 backup / restic S3 backup (time)",
        ("safehold-s3", "backup"),
        ("restic-s3", "backup"),
        None,
    ),
    (
        "safehold S3 restore / safehold local restore (time)",
        ("safehold-s3", "restore"),
        ("safehold-local", "restore"),
        None,
    ),
]


def ratios(outcome: Outcome) -> list[dict[str, Any]]:
    out = []
    for label, (nc, np_), (dc, dp), target in RATIOS:
        num, den = walls(outcome, nc, np_), walls(outcome, dc, dp)
        r_min = run.ratio(min(num), min(den)) if num and den else None
        r_med = run.ratio(statistics.median(num), statistics.median(den)) if num and den else None
        met = None
        if target is not None and r_min is not None and r_med is not None:
            met = r_med <= target
        out.append({"label": label, "min": r_min, "median": r_med, "target": target, "met": met})
    return out


def ratio_rows(rs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for r in rs:
        target = "" if r["target"] is None else f"<= {r['target']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        rows.append((r["label"], run.fmt_ratio(r["min"]), run.fmt_ratio(r["median"]), target, met))
    return rows


def markdown(report: dict[str, Any], outcome: Outcome, cases: list[Case]) -> str:
    mach, data = report["machine"], report["dataset"]
    lines = [
        "# safehold S3 benchmark",
        "",
        "Written by `bench/s3_run.py`; see `bench/README.md`.",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {mach['date']}",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB RAM, "
        f"{mach['os']}, Linux {mach['kernel']}, Python {mach['python']}, "
        f"load average {mach['load_avg_1min']:.2f} at start",
        "- Tools: " + ", ".join(f"{k} `{v}`" for k, v in report["versions"].items()),
        f"- S3 server: SeaweedFS `weed mini` on 127.0.0.1 ({report['weed_version']}),"
        " on the same machine; its CPU time per phase is the 'server CPU s' column",
        f"- Dataset: {data['files']} files, {data['bytes'] / MB:.0f} MB (scale {data['scale']});"
        f" {report['rounds']} round(s), case order reversed on odd rounds",
        f"- Restore cache: {report['restore_cache']}",
        "- CPUs: "
        + (
            f"pinned: every timed client on CPU {CLIENT_CPU} (taskset), SeaweedFS on CPU"
            f" {SERVER_CPU}"
            if report["pinned"]
            else "not pinned: clients and SeaweedFS share both"
        ),
        "- MB/s is dataset bytes / wall time (MB = 10^6 bytes). CPU is the tool's own"
        " (user + system of its whole process tree, os.wait4), not the server's.",
        "",
        "## Measurements",
        "",
    ]
    lines += run.md_table(SUMMARY_HEADER, summary_rows(outcome, cases, data["bytes"]))
    lines += ["", "## Ratios (time; < 1 means the numerator is faster)", ""]
    header = ("ratio", "of minima", "of medians", "target", "met (medians)")
    lines += run.md_table(header, ratio_rows(report["ratios"]))
    if outcome.errors:
        lines += ["", "## Failures", ""]
        lines += [f"- {e.splitlines()[0]}" for e in outcome.errors]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=0.3, help="dataset scale (1.0 ~ 1.6 GB)")
    parser.add_argument("--data", type=Path, help="an existing dataset (read only)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (min and median reported)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/safehold-s3-bench"),
        help="dataset, server data, repositories, caches, logs; its parts are wiped at start",
    )
    parser.add_argument(
        "--cold-restore",
        action="store_true",
        help="empty each tool's local cache before restoring (as on a new host)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help=f"run every timed client on CPU {CLIENT_CPU} and SeaweedFS on CPU {SERVER_CPU}"
        " (taskset): one core each, so the server does not compete with the client",
    )
    parser.add_argument("--safehold-bin", help="safehold executable (default: PATH, .venv)")
    parser.add_argument("--restic-bin", default="restic", help="restic executable")
    parser.add_argument("--json-out", type=Path, help="write all measurements as JSON")
    parser.add_argument("--markdown-out", type=Path, help="write the markdown report")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def weed_version() -> str:
    from tests.servers import weed_binary

    proc = subprocess.run(
        [str(weed_binary()), "version"], capture_output=True, text=True, check=False
    )
    lines = proc.stdout.strip().splitlines()
    return lines[0] if lines else "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = run.machine_info()
    safehold = run.resolve_binary("safehold", args.safehold_bin)
    restic = shutil.which(args.restic_bin)
    missing = [f"error: safehold not found ({Safehold.install_hint})"] if not safehold else []
    missing += [f"error: restic not found ({Restic.install_hint})"] if not restic else []
    if missing:
        sys.exit("\n".join(missing))
    assert safehold and restic
    work = args.work.resolve()
    for sub in ("seaweedfs", *CASE_NAMES):
        shutil.rmtree(work / sub, ignore_errors=True)
    if args.data:
        data, scale = args.data.resolve(), None
        if not data.is_dir():
            sys.exit(f"error: --data {data} is not a directory")
    else:
        data, scale = work / "data", args.scale
        run.fresh_dir(data)
        print(f"generating dataset (scale {scale}) in {data}", flush=True)
        dataset.generate(data, scale)
    files, size = dataset.tree_stats(data)
    print(f"dataset {data}: {files} files, {size / MB:.0f} MB", flush=True)

    outcome = Outcome()
    if args.pin and (os.cpu_count() or 1) < 2:
        sys.exit("error: --pin needs at least two CPUs")
    pin = ["taskset", "--cpu-list", str(CLIENT_CPU)] if args.pin else None
    with run_seaweedfs(work / "seaweedfs") as server:
        pid = weed_pid(work / "seaweedfs")
        if args.pin:
            pin_process(pid, SERVER_CPU)

        def s3_case(name: str, connections: int | None) -> Case:
            bucket = name.removeprefix("safehold-")  # s3, s3-c8

            def make(home: Path, rnd: int) -> Tool:
                location = server.location(f"{bucket}-r{rnd}", "repo")
                return SafeholdCase(safehold, home, location, server, connections, pin)

            return Case(name, bucket, make)

        cases = [
            Case(
                "safehold-local",
                None,
                lambda home, _rnd: SafeholdCase(safehold, home, pin=pin),
            ),
            s3_case("safehold-s3", None),
            s3_case("safehold-s3-c8", 8),
            Case(
                "restic-s3",
                "restic",
                lambda h, r: ResticS3(restic, h, server, f"restic-r{r}", pin),
            ),
        ]
        versions = {
            "safehold": SafeholdCase(safehold, work).version(),
            "restic": ResticS3(restic, work, server, "x").version(),
        }
        started = time.monotonic()
        for rnd in range(args.repeat):
            one_round(rnd, cases, work, data, server, pid, args.cold_restore, outcome, args.pin)
        elapsed = time.monotonic() - started

    report: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/s3_run.py", *(argv or sys.argv[1:])]),
        "machine": machine,
        "versions": versions,
        "weed_version": weed_version(),
        "dataset": {"path": str(data), "files": files, "bytes": size, "scale": scale},
        "rounds": args.repeat,
        "pinned": args.pin,
        "restore_cache": (
            "cold: each tool's local cache emptied before its restore"
            if args.cold_restore
            else "warm: each restore runs with the local cache its backup left"
        ),
        "work": str(work),
        "seconds": elapsed,
        "samples": [asdict(s) | {"cpu_s": s.m.cpu_s} for s in outcome.samples],
        "ratios": ratios(outcome),
        "errors": outcome.errors,
    }
    text = markdown(report, outcome, cases)
    print(f"\n{len(outcome.samples)} phases in {elapsed:.0f} s\n\n{text}", end="")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.markdown_out:
        args.markdown_out.write_text(text)
    return 1 if outcome.errors else 0


if __name__ == "__main__":
    sys.exit(main())
