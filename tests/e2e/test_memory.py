"""Memory stays bounded: data far larger than a few packs never sits in memory at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import CLI, SAFEHOLD

DATA_MIB = 768
LIMIT_MIB = 400  # the interpreter and libraries take ~100 MiB; packs in flight ~100 MiB


def _peak_rss_mib(cli: CLI, *args: str) -> int:
    """Run safehold and return the child's peak resident set size."""
    proc = subprocess.Popen([*SAFEHOLD, *args], env=cli.env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss // 1024  # KiB on Linux


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
