"""SIGTERM and SIGHUP (what `timeout`, systemd, `kill`, container runtimes and a closed
terminal send) stop a command as Ctrl-C does: one line, exit 130, no lock left, nothing
half-recorded, a repository that checks clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLI, SAFEHOLD
from tests.e2e.test_cli import backup, make_tree, snapshots
from tests.e2e.test_faults import one_line_error, packs, wait_for


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_backup_stops_it_cleanly(cli: CLI, tmp_path: Path, signum: int) -> None:
    small = make_tree(tmp_path / "small")
    cli.init()
    first = backup(cli, small)["snapshot_id"]
    big = tmp_path / "big"
    big.mkdir()
    for i in range(20):  # 160 MiB of random data: several packs, seconds of work
        (big / f"f{i:02}").write_bytes(os.urandom(8 << 20))
    packs_before = packs(cli.repo)
    # SIGHUP as the command's default (a suite started under nohup ignores it, and a command
    # keeps an ignored SIGHUP ignored, as nohup wants: the backup then ran to its end)
    proc = subprocess.Popen(
        [*SAFEHOLD, "backup", big],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    try:
        wait_for(
            lambda: len(packs(cli.repo) - packs_before) >= 1 or proc.poll() is not None,
            "the first pack",
        )
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert one_line_error(result, 130) == "safehold: Interrupted; nothing half-done was recorded"
    assert json.loads(cli.run("--json", "locks").stdout) == []
    assert [s["id"] for s in snapshots(cli)] == [first]
    check = json.loads(cli.run("--json", "check").stdout)
    assert check["errors"] == [] and check.get("warnings", []) == [], check
    backup(cli, big)  # the next backup works, and reuses what was uploaded
