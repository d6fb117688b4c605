"""sources/command.py with real programs: stdout stored, a failing program leaves no snapshot."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument, LockLost
from safehold.repo.repository import Repository
from safehold.sources.command import (
    CommandClosedInput,
    StreamSpec,
    backup_command,
    parse_command,
    pipe_to_command,
    single_file,
)
from safehold.sources.external import ExternalCommandFailed

PY = sys.executable
# 3 MiB of seeded random bytes (more than the test repository's 256 KiB packs)
WRITER = "import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(3 << 20))"
EXPECTED = __import__("random").Random(7).randbytes(3 << 20)


def test_stdout_is_stored_and_piped_back(memory_repo: Repository) -> None:
    result = backup_command(memory_repo, [PY, "-c", WRITER], StreamSpec("db/dump.bin"))
    snap = memory_repo.list_snapshots()[0]
    assert snap.id == result.snapshot.id
    assert snap.paths == ["/db/dump.bin"]
    assert snap.source["kind"] == "command" and snap.source["program"].startswith("python")
    node = single_file(memory_repo, snap)
    assert node.size == len(EXPECTED)
    out = io.BytesIO()
    reader = "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"
    sent = pipe_to_command(memory_repo, node, [PY, "-c", reader], out)
    assert sent == len(EXPECTED)
    assert out.getvalue().decode().strip() == hashlib.sha256(EXPECTED).hexdigest()


@pytest.mark.parametrize(
    "script",
    [
        "import sys; sys.exit(3)",  # fails at once, writes nothing
        # writes a complete-looking dump (several packs), then fails
        WRITER + "; sys.stdout.flush(); sys.stderr.write('disk full\\nat the end\\n'); sys.exit(5)",
    ],
)
def test_failing_command_leaves_no_snapshot(memory_repo: Repository, script: str) -> None:
    with pytest.raises(ExternalCommandFailed) as err:
        backup_command(memory_repo, [PY, "-c", script], StreamSpec("dump"))
    message = str(err.value)
    assert message.startswith("python")
    assert "exited with code 3" in message or "code 5: disk full | at the end" in message
    assert memory_repo.list_snapshots() == []


def test_chatty_stderr_does_not_block(memory_repo: Repository) -> None:
    script = (
        "import sys\n"
        "for i in range(20000): sys.stderr.write('progress line %d\\n' % i)\n"
        "sys.stdout.write('done')"
    )
    backup_command(memory_repo, [PY, "-c", script], StreamSpec("dump"))
    assert len(memory_repo.list_snapshots()) == 1


def test_lapsed_lock_after_a_good_command_leaves_no_snapshot(memory_repo: Repository) -> None:
    def lapsed() -> None:
        raise LockLost("test", "lock lapsed")

    spec = StreamSpec("dump", ensure_locked=lapsed)
    with pytest.raises(LockLost):
        backup_command(memory_repo, [PY, "-c", WRITER], spec)
    assert memory_repo.list_snapshots() == []


def test_restore_command_failures(memory_repo: Repository) -> None:
    backup_command(memory_repo, [PY, "-c", WRITER], StreamSpec("dump"))
    node = single_file(memory_repo, memory_repo.list_snapshots()[0])
    with pytest.raises(ExternalCommandFailed, match="code 4"):
        pipe_to_command(memory_repo, node, ["sh", "-c", "cat >/dev/null; exit 4"])
    with pytest.raises(ExternalCommandFailed, match="code 2"):  # fails without reading
        pipe_to_command(memory_repo, node, ["sh", "-c", "exit 2"])
    with pytest.raises(CommandClosedInput):  # exits 0 after reading only a little
        pipe_to_command(memory_repo, node, ["head", "-c", "10"], io.BytesIO())


def test_parse_command_is_shell_free() -> None:
    assert parse_command("mongodump --archive --uri 'mongodb://h/x?a=1&b=2'") == [
        "mongodump",
        "--archive",
        "--uri",
        "mongodb://h/x?a=1&b=2",
    ]
    assert parse_command("echo $HOME | cat") == ["echo", "$HOME", "|", "cat"]


def test_single_file_of_a_tree_needs_include(memory_repo: Repository, tmp_path: Path) -> None:
    from safehold.archive.snapshotter import BackupRequest, run_backup

    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(b"second")
    snap = run_backup(memory_repo, BackupRequest(paths=[str(tmp_path)], tags=[])).snapshot
    with pytest.raises(InvalidArgument, match="several files"):
        single_file(memory_repo, snap)
    node = single_file(memory_repo, snap, [str(tmp_path / "b")])
    out = io.BytesIO()
    pipe_to_command(memory_repo, node, ["cat"], out)
    assert out.getvalue() == b"second"
