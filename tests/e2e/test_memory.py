"""Memory stays bounded: data far larger than a few packs never sits in memory at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CLI, SAFEHOLD

DATA_MIB = 768
LIMIT_MIB = 400  # the interpreter and libraries take ~100 MiB; packs in flight ~100 MiB


# A child's ru_maxrss starts at its parent's resident size (fork copies the page tables and
# exec keeps the high-water mark), so a pytest process grown to 500 MiB by earlier tests
# would be counted. A small launcher forks the measured command and reports its peak alone.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss // 1024)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _peak_rss_mib(cli: CLI, *args: str) -> int:
    """Run safehold and return its peak resident set size, in MiB."""
    ran = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *SAFEHOLD, *args],
        env=cli.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(ran.stdout)


def test_backup_and_restore_of_a_large_file_use_bounded_memory(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "big.bin", "wb") as f:
        for _ in range(DATA_MIB):
            f.write(os.urandom(1 << 20))
    cli.init()
    assert _peak_rss_mib(cli, "backup", str(data), "--quiet") < LIMIT_MIB
    target = tmp_path / "restore"
    assert _peak_rss_mib(cli, "restore", "latest", "--target", str(target), "--quiet") < LIMIT_MIB
    assert (target / data.relative_to("/") / "big.bin").stat().st_size == DATA_MIB << 20
