"""Benchmark safehold against restic and borg on one dataset, in one run.

Every tool goes through the same phases on the same data, interleaved phase by
phase so that all of them see the same page-cache state:

1. backup_initial    first backup into a fresh encrypted, compressed repository
2. backup_unchanged  the same backup again, nothing changed
3. backup_mutated    again after `dataset.py mutate` changed about 1 % of the data
4. restore           the latest snapshot into an empty directory, then verified

Each phase is one child process, timed with os.wait4() for wall time, user and
system CPU time and peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dataset

BENCH_DIR = Path(__file__).resolve().parent
PASSWORD = "safehold-bench-password"
ALL_TOOLS = ("safehold", "restic", "borg")
PHASES = ("backup_initial", "backup_unchanged", "backup_mutated", "restore")
MB = 1_000_000
MIB = 1024 * 1024


class ToolError(RuntimeError):
    """A tool exited non-zero; the message carries the tail of its stderr."""


class Tool:
    """One backup program: how to call it, and where its repository and state live."""

    name = ""
    install_hint = ""
    version_args: tuple[str, ...] = ("--version",)

    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.repo = home / "repo"
        self.backups = 0

    def env(self) -> dict[str, str]:
        """A private HOME keeps each tool's cache and config apart, so it can be measured."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
        env["HOME"] = str(self.state_dir)
        return env

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def restore_dir(self) -> Path:
        return self.home / "restore"

    def version(self) -> str:
        """First line of the version output, or 'unknown' for a build that has no such flag."""
        argv = [self.binary, *self.version_args]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        return lines[0] if proc.returncode == 0 and lines else "unknown"

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def backup_cmd(self, data: Path) -> list[str]:
        raise NotImplementedError

    def restore_cmd(self) -> list[str]:
        """Runs with cwd=restore_dir; every tool recreates restore_dir/<absolute source path>."""
        raise NotImplementedError


class Safehold(Tool):
    name = "safehold"
    install_hint = "pip install -e . in the safehold checkout, or pass --safehold-bin"

    def env(self) -> dict[str, str]:
        return super().env() | {"SAFEHOLD_PASSWORD": PASSWORD}

    def init_cmd(self) -> list[str]:
        return [self.binary, "--repo", str(self.repo), "init"]

    def backup_cmd(self, data: Path) -> list[str]:
        return [self.binary, "--repo", str(self.repo), "--json", "backup", str(data)]

    def restore_cmd(self) -> list[str]:
        target = str(self.restore_dir)
        return [self.binary, "--repo", str(self.repo), "restore", "latest", "--target", target]


class Restic(Tool):
    name = "restic"
    install_hint = "apt-get install restic"
    version_args = ("version",)

    def env(self) -> dict[str, str]:
        # --json makes restic print 60 status lines a second; one is plenty.
        return super().env() | {"RESTIC_PASSWORD": PASSWORD, "RESTIC_PROGRESS_FPS": "1"}

    def init_cmd(self) -> list[str]:
        return [self.binary, "-r", str(self.repo), "init", "--repository-version", "2"]

    def backup_cmd(self, data: Path) -> list[str]:
        repo = str(self.repo)
        return [self.binary, "-r", repo, "backup", "--compression", "auto", "--json", str(data)]

    def restore_cmd(self) -> list[str]:
        target = str(self.restore_dir)
        return [self.binary, "-r", str(self.repo), "restore", "latest", "--target", target]


class Borg(Tool):
    name = "borg"
    install_hint = "apt-get install borgbackup"

    def env(self) -> dict[str, str]:
        return super().env() | {"BORG_PASSPHRASE": PASSWORD}

    def init_cmd(self) -> list[str]:
        return [self.binary, "init", "--encryption", "repokey-blake2", str(self.repo)]

    def backup_cmd(self, data: Path) -> list[str]:
        archive = f"{self.repo}::run{self.backups + 1}"
        return [self.binary, "create", "--compression", "zstd,3", "--json", archive, str(data)]

    def restore_cmd(self) -> list[str]:
        # borg stores paths without the leading "/" and extracts below the cwd.
        return [self.binary, "extract", f"{self.repo}::run{self.backups}"]


TOOL_CLASSES: dict[str, type[Tool]] = {"safehold": Safehold, "restic": Restic, "borg": Borg}


@dataclass
class Measurement:
    """One timed phase of one tool."""

    phase: str
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_bytes: int
    dataset_bytes: int
    throughput_mb_s: float
    repo_bytes: int | None = None
    state_bytes: int | None = None
    verified: bool | None = None
    report: Any = None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


@dataclass
class ToolResult:
    """Everything measured for one tool; `error` stops its remaining phases."""

    tool: str
    version: str
    phases: dict[str, Measurement] = field(default_factory=dict)
    error: str | None = None


def du(path: Path) -> int:
    """Bytes allocated on disk below `path`, as `du -s` counts them."""
    if not path.exists():
        return 0
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def warm(root: Path) -> None:
    """Read the whole dataset so every tool starts with it in the page cache."""
    buf = bytearray(MIB)
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> content hash (or link target / dir marker) for a whole tree."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                entries[rel] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                entries[rel] = "dir"
            else:
                with open(path, "rb") as f:
                    entries[rel] = hashlib.file_digest(f, "sha256").hexdigest()
    return entries


def tree_diff(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Human-readable differences between two tree digests."""
    problems = [f"missing {p}" for p in sorted(expected.keys() - actual.keys())]
    problems += [f"extra {p}" for p in sorted(actual.keys() - expected.keys())]
    problems += [
        f"differs {p}" for p in sorted(expected.keys() & actual.keys()) if expected[p] != actual[p]
    ]
    return problems


def last_json(path: Path) -> Any:
    """The tool's own summary: the whole stdout as JSON, else its last JSON line."""
    text = path.read_text(errors="replace")
    with contextlib.suppress(ValueError):
        return json.loads(text)
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return None


def run_timed(tool: Tool, phase: str, argv: list[str], cwd: Path, data_bytes: int) -> Measurement:
    """Run one child and measure it with wait4, which reports that child's own rusage."""
    log = tool.home / "logs" / phase
    os.sync()  # earlier phases' dirty pages must not be flushed on this phase's clock
    with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=tool.env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = Path(f"{log}.err").read_text(errors="replace")[-2000:].strip()
        last = tail.splitlines()[-1] if tail else ""
        raise ToolError(f"exited {proc.returncode}: {last}\n$ {' '.join(argv)}\n{tail}")
    return Measurement(
        phase=phase,
        wall_s=wall,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        peak_rss_bytes=usage.ru_maxrss * 1024,  # Linux reports KiB
        dataset_bytes=data_bytes,
        throughput_mb_s=data_bytes / wall / MB,
    )


def backup(tool: Tool, data: Path, phase: str, data_bytes: int) -> Measurement:
    """Timed backup, then the repository and local state (cache) size it left behind."""
    warm(data)
    m = run_timed(tool, phase, tool.backup_cmd(data), tool.home, data_bytes)
    tool.backups += 1
    m.repo_bytes = du(tool.repo)
    m.state_bytes = du(tool.state_dir)
    m.report = last_json(tool.home / "logs" / f"{phase}.out")
    return m


def restore(tool: Tool, data: Path, expected: dict[str, str], data_bytes: int) -> Measurement:
    """Timed restore of the latest snapshot into an empty dir, then a byte-for-byte check."""
    target = tool.restore_dir
    fresh_dir(target)
    m = run_timed(tool, "restore", tool.restore_cmd(), target, data_bytes)
    problems = tree_diff(expected, tree_digest(target / data.relative_to("/")))
    m.verified = not problems
    for problem in problems[:20]:
        print(f"  {tool.name} restore: {problem}", file=sys.stderr)
    shutil.rmtree(target)
    return m


def resolve_binary(name: str, safehold_bin: str | None) -> str | None:
    """Where the tool's executable is; safehold also falls back to the checkout's .venv."""
    if name == "safehold":
        if safehold_bin:
            return shutil.which(safehold_bin)
        local = BENCH_DIR.parent / ".venv" / "bin" / "safehold"
        return shutil.which("safehold") or (str(local) if local.exists() else None)
    return shutil.which(name)


def make_tools(names: list[str], work: Path, safehold_bin: str | None) -> list[Tool]:
    """Build the requested tools, or exit with a clear message naming every missing one."""
    unknown = [n for n in names if n not in TOOL_CLASSES]
    if unknown:
        sys.exit(f"error: unknown tool(s) {', '.join(unknown)}; choose from {', '.join(ALL_TOOLS)}")
    tools: list[Tool] = []
    missing: list[str] = []
    for name in names:
        cls = TOOL_CLASSES[name]
        binary = resolve_binary(name, safehold_bin)
        if binary is None:
            missing.append(f"error: {name} not found ({cls.install_hint})")
        else:
            tools.append(cls(binary, work / name))
    if missing:
        sys.exit("\n".join(missing))
    return tools


def fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def prepare(tool: Tool) -> ToolResult:
    """Empty working area and an initialised repository (init is not reported)."""
    fresh_dir(tool.home)
    for sub in ("logs", "state"):
        (tool.home / sub).mkdir()
    result = ToolResult(tool=tool.name, version=tool.version())
    with phase_of(tool, result, "init"):
        run_timed(tool, "init", tool.init_cmd(), tool.home, 0)
    return result


@contextlib.contextmanager
def phase_of(tool: Tool, result: ToolResult, phase: str) -> Iterator[None]:
    """Record a tool failure instead of aborting, so the other tools still get measured."""
    try:
        yield
    except ToolError as exc:
        result.error = f"{phase}: {exc}"
        print(f"  {tool.name} {phase} FAILED: {exc}", file=sys.stderr)


def run_phases(tools: list[Tool], data: Path, seed: int) -> dict[str, ToolResult]:
    """All tools through all phases, phase by phase, so each phase sees the same cache state."""
    results = {t.name: prepare(t) for t in tools}
    for phase in PHASES:
        if phase == "backup_mutated":
            dataset.mutate(data, seed)
        data_bytes = dataset.tree_stats(data)[1]
        expected = tree_digest(data) if phase == "restore" else {}
        for tool in tools:
            result = results[tool.name]
            if result.error:
                continue
            with phase_of(tool, result, phase):
                m = (
                    restore(tool, data, expected, data_bytes)
                    if phase == "restore"
                    else backup(tool, data, phase, data_bytes)
                )
                result.phases[phase] = m
                print(text_row(row_cells(tool.name, m)), flush=True)
    return results


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def peak_rss(result: ToolResult) -> int | None:
    return max((m.peak_rss_bytes for m in result.phases.values()), default=None)


def compare(ours: ToolResult, peer: ToolResult) -> dict[str, float | None]:
    """safehold/peer ratios: throughput (>1 is better) or time, size, memory (<1 is better)."""

    def get(result: ToolResult, phase: str, attr: str) -> float | None:
        m = result.phases.get(phase)
        return None if m is None else getattr(m, attr)

    def r(phase: str, attr: str) -> float | None:
        return ratio(get(ours, phase, attr), get(peer, phase, attr))

    return {
        "backup_initial_throughput": r("backup_initial", "throughput_mb_s"),
        "backup_initial_cpu_time": r("backup_initial", "cpu_s"),
        "backup_unchanged_time": r("backup_unchanged", "wall_s"),
        "backup_mutated_time": r("backup_mutated", "wall_s"),
        "restore_throughput": r("restore", "throughput_mb_s"),
        "repo_size": r("backup_mutated", "repo_bytes"),
        "peak_rss": ratio(peak_rss(ours), peak_rss(peer)),
    }


RATIO_LABELS = {
    "backup_initial_throughput": "initial backup throughput (>1: safehold faster)",
    "backup_initial_cpu_time": "initial backup CPU time (<1: safehold cheaper)",
    "backup_unchanged_time": "unchanged re-run wall time (<1: safehold faster)",
    "backup_mutated_time": "re-run after mutate, wall time (<1: safehold faster)",
    "restore_throughput": "restore throughput (>1: safehold faster)",
    "repo_size": "repository size after last backup (<1: safehold smaller)",
    "peak_rss": "peak RSS over all phases (<1: safehold leaner)",
}


def all_ratios(results: dict[str, ToolResult]) -> dict[str, dict[str, float | None]]:
    ours = results.get("safehold")
    if ours is None:
        return {}
    return {name: compare(ours, peer) for name, peer in results.items() if name != "safehold"}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, taken at the start (load shows other activity)."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / MIB, 1),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.system()),
        "python": platform.python_version(),
        "load_avg_1min": os.getloadavg()[0],
    }


HEADER = ("tool", "phase", "wall s", "CPU s", "CPU %", "peak RSS MiB", "MB/s", "repo MiB", "ok")
WIDTHS = (8, 16, 8, 8, 5, 12, 8, 9, 3)


def row_cells(tool: str, m: Measurement) -> tuple[str, ...]:
    repo = "" if m.repo_bytes is None else f"{m.repo_bytes / MIB:.1f}"
    ok = "" if m.verified is None else ("yes" if m.verified else "NO")
    return (
        tool,
        m.phase,
        f"{m.wall_s:.2f}",
        f"{m.cpu_s:.2f}",
        f"{100 * m.cpu_s / m.wall_s:.0f}",
        f"{m.peak_rss_bytes / MIB:.0f}",
        f"{m.throughput_mb_s:.1f}",
        repo,
        ok,
    )


def text_row(cells: tuple[str, ...]) -> str:
    """Fixed-width line: names left-aligned, numbers right-aligned."""
    names = [c.ljust(w) for c, w in zip(cells[:2], WIDTHS[:2], strict=True)]
    numbers = [c.rjust(w) for c, w in zip(cells[2:], WIDTHS[2:], strict=True)]
    return "  ".join(names + numbers)


def text_table(results: dict[str, ToolResult]) -> str:
    lines = [text_row(HEADER)]
    for name, result in results.items():
        lines += [text_row(row_cells(name, m)) for m in result.phases.values()]
        if result.error:
            lines.append(f"{name}: FAILED: {result.error.splitlines()[0]}")
    return "\n".join(lines)


def md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(report: dict[str, Any], results: dict[str, ToolResult]) -> str:
    """RESULTS.md: conditions first, then raw numbers, then safehold/peer ratios."""
    mach, data = report["machine"], report["dataset"]
    lines = [
        "# safehold benchmark results",
        "",
        "Written by `bench/run.py`; see `bench/README.md` for what is measured.",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {mach['date']}",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB RAM, "
        f"{mach['os']}, Linux {mach['kernel']}, Python {mach['python']}, "
        f"load average {mach['load_avg_1min']:.2f} at start",
        "- Tools: " + ", ".join(f"{r.tool} `{r.version}`" for r in results.values()),
        f"- Dataset: {data['files']} files, {data['bytes'] / MB:.0f} MB"
        f" (scale {data['scale']}), mutate seed {data['mutate_seed']}",
        f"- Cache: {report['cache']}",
        "- MB/s is dataset bytes / wall time with MB = 10^6 bytes; CPU % > 100 means"
        " more than one core was busy.",
        "",
        "## Measurements",
        "",
    ]
    rows = [row_cells(name, m) for name, r in results.items() for m in r.phases.values()]
    lines += md_table(HEADER, rows)
    failures = [
        f"- **{r.tool} failed** in {r.error.splitlines()[0]} (logs: `{report['work']}/{r.tool}/logs`)"
        for r in results.values()
        if r.error
    ]
    lines += ["", *failures] if failures else []
    ratios = report["ratios"]
    if ratios:
        lines += ["", "## safehold / peer", ""]
        header = ("metric", *(f"vs {peer}" for peer in ratios))
        cells = [
            (label, *(fmt_ratio(ratios[peer][key]) for peer in ratios))
            for key, label in RATIO_LABELS.items()
        ]
        lines += md_table(header, cells)
    return "\n".join(lines) + "\n"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def to_json(result: ToolResult) -> dict[str, Any]:
    out = asdict(result)
    for name, m in result.phases.items():
        out["phases"][name]["cpu_s"] = m.cpu_s
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, help="existing dataset (mutate changes it in place)")
    parser.add_argument("--scale", type=float, default=1.0, help="dataset scale when generating")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/safehold-bench"),
        help="repositories, caches, logs and restores go here",
    )
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="seed for the mutate phase")
    parser.add_argument("--safehold-bin", help="safehold executable (default: PATH, .venv)")
    parser.add_argument("--json-out", type=Path, help="write all measurements as JSON")
    parser.add_argument("--markdown-out", type=Path, help="write a markdown report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    work = args.work.resolve()
    tools = make_tools([t for t in args.tools.split(",") if t], work, args.safehold_bin)
    if args.data:
        data, scale = args.data.resolve(), None
        if not data.is_dir():
            sys.exit(f"error: --data {data} is not a directory")
    else:
        data, scale = work / "data", args.scale
        fresh_dir(data)
        print(f"generating dataset (scale {scale}) in {data}", flush=True)
        dataset.generate(data, scale)
    files, size = dataset.tree_stats(data)
    cache_note = "warm: the dataset is read once before every backup phase (page cache not dropped)"
    print(f"dataset {data}: {files} files, {size / MB:.0f} MB; {cache_note}", flush=True)
    print(text_row(HEADER), flush=True)

    results = run_phases(tools, data, args.seed)

    report = {
        "command": " ".join(["python", "bench/run.py", *(argv or sys.argv[1:])]),
        "machine": machine,
        "dataset": {
            "path": str(data),
            "files": files,
            "bytes": size,
            "scale": scale,
            "mutate_seed": args.seed,
        },
        "cache": cache_note,
        "work": str(work),
        "tools": {name: to_json(r) for name, r in results.items()},
        "ratios": all_ratios(results),
    }
    print("\n" + text_table(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown_out:
        args.markdown_out.write_text(markdown(report, results))
    ok = all(not r.error and r.phases["restore"].verified for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
