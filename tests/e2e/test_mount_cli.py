"""`safehold mount`: every snapshot as a read-only FUSE file system, mounted for real in
the test run, read back byte for byte, and unmounted cleanly by SIGTERM and SIGINT."""

from __future__ import annotations

import ctypes.util
import errno
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI, SAFEHOLD
from tests.e2e.test_cli import backup, make_cli, make_tree, tree_state
from tests.e2e.test_restic_cmds_cli import fail_line

DEADLINE = 60.0


def fuse_missing() -> str | None:
    """Why FUSE cannot work here (scripts/test.sh installs Debian's fuse3 in CI), or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not ctypes.util.find_library("fuse3"):
        return "libfuse3 is not installed (Debian: fuse3)"
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        return "fusermount3 is not installed (Debian: fuse3)"
    return None


pytestmark = pytest.mark.skipif(fuse_missing() is not None, reason=f"FUSE: {fuse_missing()}")


@dataclass(frozen=True)
class Mounted:
    cli: CLI
    data: Path
    first: str
    first_state: dict[str, tuple[object, ...]]
    second: str


@pytest.fixture(scope="module")
def mounted_repo(tmp_path_factory: pytest.TempPathFactory) -> Mounted:
    base = tmp_path_factory.mktemp("mount")
    cli = make_cli(base)
    data = make_tree(base / "data")
    cli.init()
    first = backup(cli, data, "--host", "h1", "--tag", "daily", "--time", "2024-05-01T10:00:00Z")
    state = tree_state(data)
    (data / "hello.txt").write_text("changed\n")
    second = backup(cli, data, "--host", "h2", "--time", "2024-05-02T10:00:00Z")
    return Mounted(cli, data, first["snapshot_id"], state, second["snapshot_id"])


@contextmanager
def mount(repo: Mounted, mountpoint: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`safehold --json mount` running until the block ends; unmounted and stopped whatever
    happens (by PID and by fusermount3, never by name)."""
    mountpoint.mkdir()
    proc = subprocess.Popen(
        [*SAFEHOLD, "--json", "mount", str(mountpoint)],
        env=repo.cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the kernel has mounted it
        assert line, proc.stderr.read().decode() if proc.stderr else "no output"
        assert json.loads(line)["message_type"] == "mounted"
        assert os.path.ismount(mountpoint)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE)
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def stop(proc: subprocess.Popen[bytes], sig: int, mountpoint: Path) -> dict[str, Any]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err.decode()
    assert not os.path.ismount(mountpoint)
    return json.loads(out.decode().splitlines()[-1])  # type: ignore[no-any-return]


def test_snapshots_hosts_tags_read_back_identical(mounted_repo: Mounted, tmp_path: Path) -> None:
    repo, mnt = mounted_repo, tmp_path / "mnt"
    with mount(repo, mnt) as proc:
        assert sorted(os.listdir(mnt)) == ["hosts", "ids", "snapshots", "tags"]
        times = sorted(os.listdir(mnt / "snapshots"))
        assert times == ["2024-05-01T10:00:00+00:00", "2024-05-02T10:00:00+00:00", "latest"]
        assert os.readlink(mnt / "snapshots" / "latest") == times[1]
        assert sorted(os.listdir(mnt / "hosts")) == ["h1", "h2"]
        assert os.readlink(mnt / "hosts" / "h1" / "latest") == times[0]
        assert sorted(os.listdir(mnt / "tags" / "daily")) == [times[0], "latest"]
        assert sorted(os.listdir(mnt / "ids")) == sorted([repo.first[:8], repo.second[:8]])

        # every file, mode, mtime and link target as backed up, bytes read through the kernel
        first = mnt / "tags" / "daily" / "latest" / str(repo.data).lstrip("/")
        assert tree_state(first) == repo.first_state
        latest = mnt / "snapshots" / "latest" / str(repo.data).lstrip("/")
        assert (latest / "hello.txt").read_text() == "changed\n"
        big = latest / "sub" / "random.bin"
        with open(big, "rb") as f:  # reads at offsets across blob boundaries
            f.seek(1_000_000)
            assert (
                f.read(700_000)
                == (repo.data / "sub" / "random.bin").read_bytes()[1_000_000:1_700_000]
            )
        assert os.readlink(latest / "link") == "hello.txt"

        with pytest.raises(OSError) as refused:
            (latest / "hello.txt").write_text("x")
        assert refused.value.errno == errno.EROFS
        with pytest.raises(FileNotFoundError):
            (latest / "nope").stat()
        summary = stop(proc, signal.SIGTERM, mnt)
    assert summary == {"message_type": "summary", "mountpoint": str(mnt), "unmounted": True}
    assert "no locks" in repo.cli.run("locks").stdout.decode()


def test_ctrl_c_unmounts_cleanly(mounted_repo: Mounted, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mount(mounted_repo, mnt) as proc:
        assert (mnt / "ids" / mounted_repo.second[:8]).is_dir()
        assert stop(proc, signal.SIGINT, mnt)["unmounted"] is True
    deadline = time.monotonic() + DEADLINE
    while "no locks" not in mounted_repo.cli.run("locks").stdout.decode():
        assert time.monotonic() < deadline, "the mount's lock was not released"
        time.sleep(0.2)


def test_bad_mount_point_is_one_line(mounted_repo: Mounted, tmp_path: Path) -> None:
    assert "is not a directory" in fail_line(mounted_repo.cli, "mount", str(tmp_path / "nope"))
