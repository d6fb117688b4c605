"""One `safehold pg wal-fetch` as PostgreSQL's restore_command runs it: CPU and wall time
per call, with the repository's default key derivation (Argon2id, 64 MiB, 3 passes), the
key derived on every call (SAFEHOLD_KEY_CACHE=off) against the per-user key cache
(repo/keycache.py, the default with a password file).

    .venv/bin/python bench/walcall_run.py --calls 12

A repository in a temporary directory, one 16 MiB segment pushed, then rounds that
alternate the two ways, each round one fetch of a missing history file (as a promotion
asks), one of the present segment, and one `pg wal-push` of a new 16 MiB segment (as
archive_command, without --spool). Bytecode is compiled first and used, as by an
installed safehold. CPU is the call's user + system rusage; the load average is printed.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
SEGMENT = "000000010000000000000001"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit code of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    code = subprocess.run(argv, env=env, capture_output=True).returncode
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12, help="rounds (each way, each file)")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(SRC, quiet=1)
    with tempfile.TemporaryDirectory(prefix="safehold-walcall-") as tmp:
        base = Path(tmp)
        password = base / "password"
        password.write_text("bench password")
        password.chmod(0o600)
        pgdata = base / "pgdata"
        (pgdata / "global").mkdir(parents=True)
        (pgdata / "pg_wal").mkdir()
        (pgdata / "global" / "pg_control").write_bytes(struct.pack("<Q", 7712345678901234567))
        (pgdata / "pg_wal" / SEGMENT).write_bytes(os.urandom(1 << 20) + bytes(15 << 20))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
        env["XDG_CACHE_HOME"] = str(base / "cache")
        safehold = [sys.executable, "-m", "safehold", "--repo", str(base / "repo")]
        safehold += ["--password-file", str(password)]
        subprocess.run([*safehold, "init"], env=env, check=True, capture_output=True)
        push = [*safehold, "pg", "wal-push", f"pg_wal/{SEGMENT}", "--pgdata", str(pgdata)]
        subprocess.run(push, env=env, check=True, capture_output=True)
        fetches = {
            "missing": [*safehold, "pg", "wal-fetch", "00000002.history", "pg_wal/RECOVERYHISTORY"],
            "present": [*safehold, "pg", "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG"],
        }
        ways = {"derived every call": {**env, "SAFEHOLD_KEY_CACHE": "off"}, "key cache": env}
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        segno = 1
        for _ in range(args.calls):
            for way, way_env in ways.items():
                segno += 1
                name = f"00000001{segno >> 8:08X}{segno & 0xFF:08X}"
                (pgdata / "pg_wal" / name).write_bytes(os.urandom(1 << 20) + bytes(15 << 20))
                fetches["push"] = [*safehold, "pg", "wal-push", f"pg_wal/{name}"]
                for what, argv in fetches.items():
                    wall, cpu, code = timed([*argv, "--pgdata", str(pgdata)], way_env)
                    assert code == (4 if what == "missing" else 0), (way, what, code)
                    results.setdefault((way, what), []).append((wall, cpu))
        load = os.getloadavg()
    print(f"load average during the run (1/5/15 min, at its end): {load[0]:.1f} / "
          f"{load[1]:.1f} / {load[2]:.1f}; {args.calls} calls each")  # fmt: skip
    print("| key | call | CPU s median (min-max) | wall s median (min-max) |")
    print("|---|---|---|---|")
    for (way, what), samples in results.items():
        walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
        print(
            f"| {way} | {what} | {statistics.median(cpus):.3f} ({min(cpus):.3f}-{max(cpus):.3f})"
            f" | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) |"
        )


if __name__ == "__main__":
    main()
