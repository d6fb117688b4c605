"""Bad input and damage, as a user meets them: one clear line, the right exit code, no loss.

Each case runs the real CLI in a subprocess against a real repository on disk, breaks
something (a password, a pack, the disk, a process in the middle of a backup) and checks
that safehold says what is wrong in one line, exits with the documented code, and that
every snapshot made before still restores byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CLI, SAFEHOLD
from tests.e2e.test_cli import (
    KDF,
    assert_same_tree,
    backup,
    json_lines,
    make_cli,
    make_tree,
    random_bytes,
    restored,
    snapshots,
    tree_state,
    with_env,
)

# Root ignores file permissions; without these capabilities it obeys them like anyone.
# (runuser -u nobody cannot run this venv's Python, which lives under /root.)
NO_DAC = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
]


def one_line_error(proc: subprocess.CompletedProcess[bytes], code: int) -> str:
    """The process failed with ``code`` and said why in one line, without a traceback."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"wanted one line on stderr, got:\n{err}"
    assert lines[0].startswith("safehold: "), lines[0]
    return lines[0]


def item_errors(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    """Per-file error lines (``error: PATH: why``); anything else on stderr is a failure."""
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), err
    return lines


def packs(repo: Path) -> set[Path]:
    return {p for p in (repo / "data").rglob("*") if p.is_file() and not p.name.startswith(".")}


def two_snapshots(cli: CLI, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Snapshot 1 holds good.bin; snapshot 2 adds victim.bin, whose data pack is returned."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.bin").write_bytes(random_bytes(400_000, seed=1))
    cli.init()
    backup(cli, data)
    before = packs(cli.repo)
    (data / "victim.bin").write_bytes(random_bytes(400_000, seed=2))
    backup(cli, data)
    new = packs(cli.repo) - before
    victim_pack = max(new, key=lambda p: p.stat().st_size)  # the other new pack holds trees
    return data, data / "victim.bin", victim_pack


def pack_key(pack: Path, repo: Path) -> str:
    return pack.relative_to(repo).as_posix()


@dataclass
class Populated:
    """A repository with one snapshot of make_tree's tree, for tests that only read it."""

    cli: CLI
    data: Path
    snapshot_id: str


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    base = tmp_path_factory.mktemp("populated")
    cli = make_cli(base)
    data = make_tree(base / "data")
    (data / "big").write_bytes(random_bytes(4 << 20, seed=4))
    cli.init()
    return Populated(cli, data, backup(cli, data)["snapshot_id"])


# ---- passwords and repositories -------------------------------------------------------


def test_wrong_password_exits_12(populated: Populated, tmp_path: Path) -> None:
    cli, data = populated.cli, populated.data
    wrong = with_env(cli, SAFEHOLD_PASSWORD="wrong password")
    for args in (
        ["snapshots"],
        ["backup", str(data)],
        ["restore", "latest", "--target", str(tmp_path / "r")],
    ):
        line = one_line_error(wrong.run(*args, check=False), 12)
        assert "password" in line.lower()
    assert len(snapshots(cli)) == 1  # the failed backup recorded nothing
    assert not (tmp_path / "r").exists()

    password_file = tmp_path / "pw"
    password_file.write_text("also wrong\n")
    one_line_error(cli.run("snapshots", "--password-file", password_file, check=False), 12)
    failing = with_env(cli, drop=("SAFEHOLD_PASSWORD",), SAFEHOLD_PASSWORD_COMMAND="exit 7")
    line = one_line_error(failing.run("snapshots", check=False), 1)
    assert "password command" in line and "7" in line
    line = one_line_error(cli.run("snapshots", "-p", tmp_path / "missing", check=False), 1)
    assert "missing" in line


def test_no_password_and_no_terminal(cli: CLI) -> None:
    cli.init()

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*SAFEHOLD, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            start_new_session=True,  # no controlling terminal to prompt on
            timeout=60,
        )

    no_password = {k: v for k, v in cli.env.items() if k != "SAFEHOLD_PASSWORD"}
    assert "SAFEHOLD_PASSWORD" in one_line_error(run("snapshots", env=no_password), 1)
    proc = run("key", "add", env=cli.env)  # the new password has no source either
    assert "--new-password-file" in one_line_error(proc, 1)
    assert len(list((cli.repo / "keys").iterdir())) == 1


def test_empty_new_password_refused(cli: CLI, tmp_path: Path) -> None:
    """An exported but empty variable must not create a repository anyone can open."""
    empty = with_env(cli, SAFEHOLD_PASSWORD="")
    assert "empty password" in one_line_error(empty.run("init", *KDF, check=False), 1)
    assert not cli.repo.exists()
    cli.init()
    (tmp_path / "empty").write_bytes(b"\n")
    for command in ("add", "passwd"):
        proc = cli.run("key", command, "--new-password-file", tmp_path / "empty", check=False)
        assert "empty password" in one_line_error(proc, 1)
    assert len(list((cli.repo / "keys").iterdir())) == 1
    assert snapshots(cli) == []  # the old password still opens it


def test_missing_repository_exits_10(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    for args in (
        ["snapshots"],
        ["backup", str(data)],
        ["restore", "latest", "--target", str(tmp_path / "r")],
        ["ls", "latest"],
        ["key", "list"],
    ):
        line = one_line_error(cli.run(*args, check=False), 10)
        assert str(cli.repo) in line and "init" in line
    assert not cli.repo.exists()  # a failed backup does not create one
    line = one_line_error(
        with_env(cli, drop=("SAFEHOLD_REPOSITORY",)).run("snapshots", check=False), 1
    )
    assert "--repo" in line


def test_not_a_repository_exits_10(cli: CLI, tmp_path: Path) -> None:
    somewhere = make_tree(tmp_path / "somewhere")
    before = {p: p.read_bytes() for p in somewhere.rglob("*") if p.is_file()}
    a_file = tmp_path / "a-file"
    a_file.write_text("not a repository")
    for location in (somewhere, a_file):
        for args in (["snapshots"], ["backup", str(somewhere)], ["ls", "latest"]):
            proc = cli.run("-r", location, *args, check=False)
            assert str(location) in one_line_error(proc, 10)
    after = {p: p.read_bytes() for p in somewhere.rglob("*") if p.is_file()}
    assert after == before
    assert a_file.read_text() == "not a repository"


def test_init_twice_overwrites_nothing(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    cli.init()
    backup(cli, data)
    before = {p: p.read_bytes() for p in cli.repo.rglob("*") if p.is_file()}
    other_password = with_env(cli, SAFEHOLD_PASSWORD="another password")
    for env, args in ((cli, ["init", *KDF]), (other_password, ["--json", "init", *KDF])):
        line = one_line_error(env.run(*args, check=False), 1)
        assert "already exists" in line and str(cli.repo) in line
    after = {p: p.read_bytes() for p in cli.repo.rglob("*") if p.is_file()}
    assert after == before
    cli.run("restore", "latest", "--target", tmp_path / "r")
    assert_same_tree(restored(tmp_path / "r", data), data)


# ---- damaged repositories -------------------------------------------------------------


def damage_pack(pack: Path, how: str) -> None:
    raw = bytearray(pack.read_bytes())
    if how == "flip":
        raw[len(raw) // 3] ^= 0x55
    else:
        del raw[len(raw) // 2 :]
    pack.write_bytes(bytes(raw))


def check_damaged_restore(cli: CLI, tmp_path: Path, how: str, thorough: bool) -> None:
    data, victim, pack = two_snapshots(cli, tmp_path)
    damage_pack(pack, how)
    target = tmp_path / "r"
    proc = cli.run("restore", "latest", "--target", target, check=False)
    assert proc.returncode != 0
    [line] = item_errors(proc)
    assert str(victim) in line and pack_key(pack, cli.repo) in line
    good = restored(target, data / "good.bin")
    assert good.read_bytes() == (data / "good.bin").read_bytes()

    if not thorough:
        return
    # the same with --json: one error object naming file and pack, then the summary
    proc = cli.run("--json", "restore", "latest", "--target", tmp_path / "rj", check=False)
    assert proc.returncode != 0
    docs = json_lines(proc)
    [error] = [d for d in docs if d.get("message_type") == "error"]
    assert error["item"] == str(victim) and pack_key(pack, cli.repo) in error["error"]
    assert docs[-1]["message_type"] == "summary" and docs[-1]["errors"] == 1

    # dump names the pack too; the first snapshot never needed that pack
    proc = cli.run("dump", "latest", victim, check=False)
    assert pack_key(pack, cli.repo) in one_line_error(proc, 1)
    first = snapshots(cli)[0]["short_id"]
    cli.run("restore", first, "--target", tmp_path / "r1")
    first_copy = restored(tmp_path / "r1", data)
    assert [p.name for p in first_copy.iterdir()] == ["good.bin"]
    assert (first_copy / "good.bin").read_bytes() == (data / "good.bin").read_bytes()


def test_corrupt_pack(cli: CLI, tmp_path: Path) -> None:
    check_damaged_restore(cli, tmp_path, "flip", thorough=True)


def test_truncated_pack(cli: CLI, tmp_path: Path) -> None:
    check_damaged_restore(cli, tmp_path, "truncate", thorough=False)


def test_deleted_index_file(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "one.bin").write_bytes(random_bytes(300_000, seed=1))
    cli.init()
    first = backup(cli, data)["snapshot_id"]
    indexes = set((cli.repo / "index").iterdir())
    (data / "two.bin").write_bytes(random_bytes(300_000, seed=2))
    backup(cli, data)
    [second_index] = set((cli.repo / "index").iterdir()) - indexes
    second_index.unlink()

    assert len(snapshots(cli)) == 2  # the snapshots themselves are intact
    line = one_line_error(cli.run("restore", "latest", "--target", tmp_path / "r", check=False), 1)
    assert "index" in line
    proc = cli.run("dump", "latest", data / "two.bin", check=False)
    assert "index" in one_line_error(proc, 1)
    # what the remaining index covers still restores
    cli.run("restore", first[:8], "--target", tmp_path / "r1")
    copy = restored(tmp_path / "r1", data)
    assert [p.name for p in copy.iterdir()] == ["one.bin"]
    assert (copy / "one.bin").read_bytes() == (data / "one.bin").read_bytes()


def test_backup_after_index_loss(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    cli.init()
    backup(cli, data)
    for index in (cli.repo / "index").iterdir():
        index.unlink()
    proc = cli.run("backup", data, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    cli.run("restore", "latest", "--target", tmp_path / "r")
    assert_same_tree(restored(tmp_path / "r", data), data)


def test_one_damaged_snapshot_file_does_not_block_the_rest(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    cli.init()
    first = backup(cli, data)["snapshot_id"]
    second = backup(cli, data, "--force")["snapshot_id"]
    damaged = cli.repo / "snapshots" / first
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    proc = cli.run("--json", "snapshots")
    [warning] = proc.stderr.decode().splitlines()
    assert warning.startswith("warning: ") and first in warning  # named, and skipped
    assert [s["id"] for s in json.loads(proc.stdout)] == [second]
    assert first[:8] not in cli.run("snapshots").stdout.decode()
    backup(cli, data)
    cli.run("restore", "latest", "--target", tmp_path / "r")
    assert_same_tree(restored(tmp_path / "r", data), data)


def test_unreadable_repository_directory_is_an_error(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    cli.init()
    backup(cli, data)
    (cli.repo / "snapshots").chmod(0)
    try:
        proc = subprocess.run(
            [*NO_DAC, *SAFEHOLD, "--json", "snapshots"],
            capture_output=True,
            env=cli.env,
            timeout=60,
        )
        line = one_line_error(proc, 1)  # not "0 snapshots"
        assert str(cli.repo / "snapshots") in line and "Permission denied" in line
    finally:
        (cli.repo / "snapshots").chmod(0o755)


# ---- interrupted backups --------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_sigkill_mid_backup_loses_nothing(cli: CLI, tmp_path: Path) -> None:
    small = make_tree(tmp_path / "small")
    cli.init()
    first = backup(cli, small)["snapshot_id"]
    states = {first: tree_state(small)}
    (small / "hello.txt").write_text("second version\n")
    second = backup(cli, small)["snapshot_id"]
    states[second] = tree_state(small)

    big = tmp_path / "big"
    big.mkdir()
    for i in range(25):  # 200 MiB of random data: about a dozen packs
        (big / f"f{i:02}").write_bytes(os.urandom(8 << 20))
    packs_before = packs(cli.repo)
    proc = subprocess.Popen(
        [*SAFEHOLD, "backup", big], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli.env
    )
    try:
        # kill it once it has uploaded its first pack: mid-way, with more to come
        wait_for(
            lambda: len(packs(cli.repo) - packs_before) >= 1 or proc.poll() is not None,
            "the first pack",
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the backup ended before it could be killed"

    assert [s["id"] for s in snapshots(cli)] == [first, second]  # only complete ones
    third = backup(cli, big)["snapshot_id"]  # the next backup succeeds
    assert states[first] != states[second]
    for sid, state in states.items():  # each earlier snapshot restores as it was made
        target = tmp_path / f"r-{sid[:8]}"
        cli.run("restore", sid[:8], "--target", target, "--verify")
        assert tree_state(restored(target, small)) == state
    assert [s["id"] for s in snapshots(cli)] == [first, second, third]
    some = [big / "f00", big / "f24"]  # the first file packed before the kill, the last after
    include = [arg for f in some for arg in ("--include", str(f))]
    cli.run("restore", third[:8], "--target", tmp_path / "r-big", "--verify", *include)
    for f in some:
        assert restored(tmp_path / "r-big", f).read_bytes() == f.read_bytes()


def test_sigint_mid_backup_exits_130(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    cli.init()
    first = backup(cli, data)["snapshot_id"]
    packs_before = packs(cli.repo)
    proc = _stdin_backup(cli, "--stdin-filename", "stream.bin")
    stdin = proc.stdin
    assert stdin is not None

    def started() -> None:
        # feed 40 MiB, keep the pipe open: the backup is certainly still running
        for _ in range(5):
            stdin.write(os.urandom(8 << 20))
        stdin.flush()
        wait_for(lambda: len(packs(cli.repo) - packs_before) >= 1, "the first pack")

    result = _interrupt(proc, started)
    assert "nterrupted" in one_line_error(result, 130)
    assert [s["id"] for s in snapshots(cli)] == [first]
    # the next backup and a restore of the earlier snapshot work
    backup(cli, "--stdin", "--stdin-filename", "stream.bin", input=b"complete\n")
    assert cli.run("dump", "latest", "/stream.bin").stdout == b"complete\n"
    cli.run("restore", first[:8], "--target", tmp_path / "r")
    assert_same_tree(restored(tmp_path / "r", data), data)


def _stdin_backup(cli: CLI, *args: str) -> subprocess.Popen[bytes]:
    # Ctrl-C's default action in the child: a suite started in the background of a
    # non-interactive shell ignores SIGINT, the child inherits that, and a command that
    # starts with SIGINT ignored rightly keeps it so (the backup then ran to its end)
    return subprocess.Popen(
        [*SAFEHOLD, "backup", "--stdin", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt(
    proc: subprocess.Popen[bytes], when_ready: Callable[[], None]
) -> subprocess.CompletedProcess[bytes]:
    """Ctrl-C once ``when_ready`` returns; the process is killed if it outlives the test."""
    try:
        when_ready()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _native_module_loaded(pid: int) -> bool:
    """Whether the process has mapped a compiled module of the venv (cryptography, zstd...)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return True  # it is gone; the caller finds out why
    return any("/site-packages/" in line and ".so" in line for line in maps.splitlines())


def test_ctrl_c_while_starting_exits_130(cli: CLI) -> None:
    """Ctrl-C while the commands are still being imported is an interrupt, not a traceback."""
    cli.init()
    proc = _stdin_backup(cli)  # stdin left open and empty: the backup never ends by itself
    result = _interrupt(
        proc, lambda: wait_for(lambda: _native_module_loaded(proc.pid), "a compiled module")
    )
    assert "nterrupted" in one_line_error(result, 130)
    assert snapshots(cli) == []


# ---- the disk and the files -----------------------------------------------------------


@contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount_point], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", mount_point], check=True)


def test_full_disk(cli: CLI, tmp_path: Path) -> None:
    small = make_tree(tmp_path / "small")
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3):
        (big / f"f{i}").write_bytes(os.urandom(6 << 20))
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        full = dataclasses.replace(cli, repo=disk / "repo")
        full = with_env(full, SAFEHOLD_REPOSITORY=str(disk / "repo"))
        full.init()
        first = backup(full, small)["snapshot_id"]
        proc = full.run("backup", big, check=False)
        assert "no space" in one_line_error(proc, 1).lower()
        assert [s["id"] for s in snapshots(full)] == [first]
        full.run("restore", "latest", "--target", tmp_path / "r", "--verify")
        assert_same_tree(restored(tmp_path / "r", small), small)
        # nothing half-written is left taking the space: a small backup still fits
        (small / "more.txt").write_text("more")
        backup(full, small)
        assert len(snapshots(full)) == 2


def test_unreadable_files_exit_3(cli: CLI, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    (data / "secret").write_text("no one may read this")
    (data / "secret").chmod(0)
    (data / "locked").mkdir()
    (data / "locked" / "inside").write_text("x")
    (data / "locked").chmod(0)
    cli.init()
    try:
        proc = subprocess.run(
            [*NO_DAC, *SAFEHOLD, "backup", data],
            capture_output=True,
            env=cli.env,
            timeout=120,
        )
    finally:
        (data / "locked").chmod(0o755)
    assert proc.returncode == 3, proc.stderr.decode()
    errors = item_errors(proc)
    assert {line.split(": ")[1] for line in errors} == {str(data / "secret"), str(data / "locked")}
    assert all("Permission denied" in line for line in errors)
    assert "snapshot" in proc.stdout.decode()
    [snap] = snapshots(cli)  # the snapshot was made, with everything readable in it
    assert snap["summary"]["errors"] == 2
    (data / "secret").unlink()
    cli.run("restore", "latest", "--target", tmp_path / "r")
    copy = restored(tmp_path / "r", data)
    assert list((copy / "locked").iterdir()) == []  # the entry is kept, its contents unread
    shutil.rmtree(data / "locked")
    (copy / "locked").rmdir()
    assert_same_tree(copy, data)

    # the same run with --json reports the errors as JSON lines
    (data / "secret").write_text("again")
    (data / "secret").chmod(0)
    proc = subprocess.run(
        [*NO_DAC, *SAFEHOLD, "--json", "backup", data],
        capture_output=True,
        env=cli.env,
        timeout=120,
    )
    assert proc.returncode == 3
    docs = json_lines(proc)
    assert {
        "message_type": "error",
        "item": str(data / "secret"),
        "error": "Permission denied",
    } in docs
    assert docs[-1]["message_type"] == "summary" and docs[-1]["errors"] == 1


def test_backup_of_only_missing_paths_records_nothing(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    proc = cli.run("backup", tmp_path / "typo", tmp_path / "other-typo", check=False)
    assert "nothing recorded" in one_line_error(proc, 1)
    assert snapshots(cli) == []


def test_restore_into_obstacles(populated: Populated, tmp_path: Path) -> None:
    cli, data = populated.cli, populated.data
    target = tmp_path / "r"
    copy = restored(target, data)
    # a directory where the snapshot has a file
    (copy / "sub" / "random.bin").mkdir(parents=True)
    (copy / "sub" / "random.bin" / "keep").write_text("mine")
    proc = cli.run("restore", "latest", "--target", target, check=False)
    assert proc.returncode == 1
    [line] = item_errors(proc)
    assert str(data / "sub" / "random.bin") in line and "directory" in line
    assert (copy / "sub" / "random.bin" / "keep").read_text() == "mine"  # left alone
    assert (copy / "hello.txt").read_text() == "hello world\n"  # the rest restored
    shutil.rmtree(copy / "sub" / "random.bin")

    # a file the restoring user may not replace (in a read-only directory)
    (copy / "hello.txt").write_text("local edit")
    (copy / "sub").chmod(0o555)
    os.chmod(copy, 0o555)
    try:
        proc = subprocess.run(
            [*NO_DAC, *SAFEHOLD, "restore", "latest", "--target", target],
            capture_output=True,
            env=cli.env,
            timeout=120,
        )
    finally:
        os.chmod(copy, 0o755)
        (copy / "sub").chmod(0o755)
    assert proc.returncode == 1
    errors = item_errors(proc)
    assert any(str(data / "hello.txt") in e and "Permission denied" in e for e in errors)
    assert any(str(data / "sub" / "random.bin") in e for e in errors)
    assert (copy / "hello.txt").read_text() == "local edit"  # not half-replaced

    # a target that is a file
    line = one_line_error(cli.run("restore", "latest", "--target", data / "empty", check=False), 1)
    assert str(data / "empty") in line


# ---- bad arguments --------------------------------------------------------------------


def test_bad_snapshot_ids(populated: Populated, tmp_path: Path) -> None:
    cli, data, sid = populated.cli, populated.data, populated.snapshot_id
    bad = "0123abcd" if not sid.startswith("0123abcd") else "fedc4321"
    for args in (
        ["restore", bad, "--target", str(tmp_path / "r")],
        ["ls", bad],
        ["dump", bad, str(data / "hello.txt")],
        ["diff", sid[:8], bad],
        ["stats", "not-hex!"],
        ["ls", "latest", "--host", "no-such-host"],
    ):
        line = one_line_error(cli.run(*args, check=False), 1)
        assert "snapshot" in line.lower()
    assert not (tmp_path / "r").exists()


def test_bad_paths_in_snapshot(populated: Populated, tmp_path: Path) -> None:
    cli, data = populated.cli, populated.data
    for path, words in (
        (data / "nope", ("not in snapshot",)),
        ("relative/path", ("absolute",)),
    ):  # a directory (or "/") is dumped as a tar: tests/e2e/test_dump_restore_flags_cli.py
        line = one_line_error(cli.run("dump", "latest", path, check=False), 1)
        assert all(w in line for w in words), line
    line = one_line_error(cli.run("ls", "latest", data / "nope", check=False), 1)
    assert "not in snapshot" in line
    # a mistyped --include is an error, not a restore of nothing
    proc = cli.run("restore", "latest", "-t", tmp_path / "r", "-i", data / "nope", check=False)
    assert str(data / "nope") in one_line_error(proc, 1)
    assert not (tmp_path / "r").exists()


def test_usage_errors_are_one_line(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    line = one_line_error(cli.run("restore", "latest", "--target", tmp_path / "r", check=False), 1)
    assert "latest" in line  # an empty repository has none
    for args, words in (
        (["bogus"], "bogus"),
        (["backup", "--no-such-option", str(tmp_path)], "--no-such-option"),
        (["restore", "latest"], "--target"),
        (
            ["restore", "latest", "--target", str(tmp_path / "r"), "--overwrite", "sometimes"],
            "--overwrite",
        ),
        (["backup", "--time", "yesterday", str(tmp_path)], "yesterday"),
        (["backup", "--stdin", str(tmp_path)], "--stdin"),
        (["backup", "--exclude-file", str(tmp_path / "missing"), str(tmp_path)], "missing"),
    ):
        assert words in one_line_error(cli.run(*args, check=False), 1)
    for name in ("", "a/../../etc/passwd"):
        proc = cli.run("backup", "--stdin", "--stdin-filename", name, input=b"x", check=False)
        assert "--stdin-filename" in one_line_error(proc, 1)
    assert snapshots(cli) == []
    assert not (tmp_path / "r").exists()


def test_dump_into_a_closed_pipe(populated: Populated) -> None:
    proc = subprocess.Popen(
        [*SAFEHOLD, "dump", "latest", populated.data / "big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=populated.cli.env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()  # like `| head -c 10`
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr
