"""docs/FORMAT.md suffices: docs/recover.py, which does not use safehold, gets files back."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safehold.archive.snapshotter import BackupRequest, run_backup
from safehold.archive.tree import Node
from safehold.repo.repository import Repository, pack_key
from safehold.storage import LocalStore

from ..archive.hostile import (
    file_node,
    hostile_repo,
    plant_blob,
    raw_block,
    save_snapshot,
    tree_of,
    zstd_frame,
)
from ..conftest import CHEAP_KDF, CLI, PASSWORD

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECOVER = DOCS / "recover.py"
ALLOWED_IMPORTS = {"cryptography", "argon2", "zstandard", "blake3"}
ODD_NAME = b"caf\xe9 \xff.bin"  # not UTF-8: stored as name_b64


def recover(
    repo: Path, snapshot: str, path: str | bytes, *args: str, password: bytes = PASSWORD
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env["SAFEHOLD_PASSWORD"] = password.decode()
    return subprocess.run(
        [sys.executable, str(RECOVER), *args, str(repo), snapshot, os.fsdecode(path)],
        capture_output=True,
        env=env,
        timeout=60,
    )


def recovered(repo: Path, snapshot: str, path: str | bytes, *args: str) -> bytes:
    proc = recover(repo, snapshot, path, *args)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A repository with two snapshots of a small tree; returns (repo, source, snapshot ids)."""
    base = tmp_path_factory.mktemp("recovery")
    src = base / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(700_000))  # many 4-64 KiB chunks, several packs
    (src / "text.txt").write_bytes(b"".join(b"line %d of some text\n" % i for i in range(20_000)))
    (src / "empty").write_bytes(b"")
    (src / "sub" / "deeper" / "nested.txt").write_text("nested\n")
    (src / "link").symlink_to("text.txt")
    with open(os.fsencode(src) + b"/" + ODD_NAME, "wb") as f:
        f.write(b"odd")
    repo = Repository.init(
        LocalStore(base / "repo"),
        PASSWORD,
        CHEAP_KDF,
        chunk_min=4096,
        chunk_avg=8192,
        chunk_max=65536,
        pack_size=256 * 1024,
    )
    first = run_backup(repo, BackupRequest([str(src)], [], time="2026-01-01T12:00:00Z"))
    (src / "text.txt").write_bytes(b"changed\n")
    # later (15:00 UTC), though its text sorts first: "latest" must compare instants
    second = run_backup(repo, BackupRequest([str(src)], [], time="2026-01-01T10:00:00-05:00"))
    assert not first.stats.errors and not second.stats.errors
    assert len(list((base / "repo" / "data").glob("*/*"))) >= 3
    return base / "repo", src, {"first": first.snapshot.id, "second": second.snapshot.id}


def test_recover_files_from_the_latest_snapshot(
    backed_up: tuple[Path, Path, dict[str, str]],
) -> None:
    repo, src, _ = backed_up
    for name in ("big.bin", "text.txt", "empty", "sub/deeper/nested.txt"):
        assert recovered(repo, "latest", f"{src}/{name}") == (src / name).read_bytes(), name


def test_recover_a_file_from_an_older_snapshot_by_prefix(
    backed_up: tuple[Path, Path, dict[str, str]],
) -> None:
    repo, src, ids = backed_up
    old = recovered(repo, ids["first"][:8], f"{src}/text.txt")
    assert old.startswith(b"line 0 of some text\n") and len(old) > 400_000
    assert recovered(repo, ids["second"][:10], f"{src}/text.txt") == b"changed\n"


def test_recover_a_file_whose_name_is_not_utf8(
    backed_up: tuple[Path, Path, dict[str, str]],
) -> None:
    repo, src, _ = backed_up
    assert recovered(repo, "latest", os.fsencode(src) + b"/" + ODD_NAME) == b"odd"


def test_recover_into_an_output_file_with_its_mode(
    backed_up: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, src, _ = backed_up
    out = tmp_path / "big.out"
    assert recovered(repo, "latest", f"{src}/big.bin", "-o", str(out)) == b""
    assert out.read_bytes() == (src / "big.bin").read_bytes()
    assert out.stat().st_mode & 0o7777 == (src / "big.bin").stat().st_mode & 0o7777


def test_recover_without_the_index_from_pack_headers(
    backed_up: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, src, _ = backed_up
    copy = tmp_path / "repo-without-index"
    shutil.copytree(repo, copy)
    shutil.rmtree(copy / "index")
    (copy / "index").mkdir()
    data = recovered(copy, "latest", f"{src}/big.bin", "--scan-packs")
    assert data == (src / "big.bin").read_bytes()


def test_recover_ignores_unfinished_writes(
    backed_up: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    """FORMAT.md §1: files named ".*" are temporary files of a put that did not finish."""
    repo, src, _ = backed_up
    copy = tmp_path / "crashed"
    shutil.copytree(repo, copy)
    for directory in ("keys", "index", "snapshots", "data/00"):
        (copy / directory).mkdir(exist_ok=True)
        (copy / directory / ".half.tmp-1-2").write_bytes(b"half written")
    for args in ((), ("--scan-packs",)):
        assert recovered(copy, "latest", f"{src}/empty", *args) == b""


def test_list_directories(backed_up: tuple[Path, Path, dict[str, str]]) -> None:
    repo, src, _ = backed_up
    listing = {}
    for line in recovered(repo, "latest", str(src)).splitlines():
        kind, size, rest = line.split(maxsplit=2)
        name, _, target = rest.partition(b" -> ")
        listing[name] = (kind, int(size), target)
    assert listing == {
        b"big.bin": (b"file", 700_000, b""),
        b"empty": (b"file", 0, b""),
        b"link": (b"symlink", 0, b"text.txt"),
        b"sub": (b"dir", 0, b""),
        b"text.txt": (b"file", 8, b""),
        ODD_NAME: (b"file", 3, b""),
    }
    root = recovered(repo, "latest", "/").split()
    assert root[0] == b"dir" and root[-1] == os.fsencode(src.parts[1])


def test_wrong_password_and_missing_paths_fail_clearly(
    backed_up: tuple[Path, Path, dict[str, str]],
) -> None:
    repo, src, _ = backed_up
    proc = recover(repo, "latest", f"{src}/big.bin", password=b"wrong")
    assert proc.returncode != 0 and b"wrong password" in proc.stderr
    proc = recover(repo, "latest", f"{src}/no such file")
    assert proc.returncode != 0 and b"not in the snapshot" in proc.stderr
    proc = recover(repo, "ffffffffff", f"{src}/big.bin")
    assert proc.returncode != 0 and b"0 snapshots match" in proc.stderr


def test_password_from_a_file(backed_up: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    repo, src, _ = backed_up
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD + b"\n")
    proc = recover(
        repo, "latest", f"{src}/empty", "--password-file", str(password_file), password=b"x"
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def test_recover_detects_a_damaged_pack(
    backed_up: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, src, _ = backed_up
    copy = tmp_path / "damaged"
    shutil.copytree(repo, copy)
    for pack in (copy / "data").glob("*/*"):
        data = bytearray(pack.read_bytes())
        data[40] ^= 0xFF
        pack.write_bytes(bytes(data))
    proc = recover(copy, "latest", f"{src}/big.bin")
    assert proc.returncode != 0 and b"damaged" in proc.stderr


def test_recover_a_repository_made_by_the_cli(cli: CLI, tmp_path: Path) -> None:
    """Default chunk sizes (512 KiB min/avg) and the default Argon2 lanes, as a user gets."""
    src = tmp_path / "data"
    src.mkdir()
    (src / "large.bin").write_bytes(os.urandom(1_600_000))  # larger than one default chunk
    (src / "small.txt").write_text("small\n")
    cli.init()
    cli.run("backup", src)
    assert recovered(cli.repo, "latest", f"{src}/large.bin") == (src / "large.bin").read_bytes()
    assert recovered(cli.repo, "latest", f"{src}/small.txt") == b"small\n"


def test_recover_py_uses_only_the_documented_libraries() -> None:
    tree = ast.parse(RECOVER.read_text())
    modules = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert "safehold" not in modules
    assert modules - ALLOWED_IMPORTS <= set(sys.stdlib_module_names)
    assert len(RECOVER.read_text().splitlines()) <= 230  # short enough to read in a crisis


@pytest.mark.parametrize("with_index", [True, False])
def test_the_by_hand_steps_of_format_md_work(
    backed_up: tuple[Path, Path, dict[str, str]], tmp_path: Path, with_index: bool
) -> None:
    """FORMAT.md §11's Python, with its four settings replaced, recovers the file."""
    repo, src, _ = backed_up
    steps, scan = re.findall(r"```python\n(.*?)```", (DOCS / "FORMAT.md").read_text(), re.S)
    settings = {
        "R": repr(str(repo)),
        "PASSWORD": repr(PASSWORD),
        "PATH": repr(os.fsencode(src / "big.bin")),
        "OUT": repr(str(tmp_path / "out.bin")),
    }
    for name, value in settings.items():
        steps, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", steps, flags=re.M)
        assert count == 1, name
    if not with_index:  # lose the index: scan the packs instead, then walk again
        steps += "\nwhere.clear()\n" + scan + steps[steps.index("# 5.") :]
    script = tmp_path / "by_hand.py"
    script.write_text(steps)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert (tmp_path / "out.bin").read_bytes() == (src / "big.bin").read_bytes()


# ---- a hostile repository: recover.py is as careful as safehold ----------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files whose packs, frames, ids or trees lie; one honest file to prove the rest."""
    repo = hostile_repo(tmp_path_factory.mktemp("hostile") / "repo")
    fifo = file_node(repo, b"fifo.bin", b"its pack becomes a FIFO\n")
    liar = plant_blob(repo, b"\x01" + zstd_frame(1 << 40, raw_block(b"abc")), 100)
    nodes = [
        file_node(repo, b"good.txt", b"good\n"),
        file_node(repo, b"setuid", b"#!/bin/sh\n", mode=0o4755),
        fifo,
        Node(name=b"liar.bin", type="file", size=100, content=[liar]),
        Node(name=b"away", type="dir", subtree="../../../../../dev/zero"),
    ]
    save_snapshot(repo, tree_of(repo, nodes))
    root = Path(repo.store.location)
    pack = root / pack_key(repo.locate(fifo.content[0]).pack)
    pack.unlink()
    os.mkfifo(pack)
    return root


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/fifo.bin", b"is not a regular file"),
        ("/liar.bin", b"declares 1099511627776 bytes"),
        ("/away/x", b"is not 64 lowercase hex digits"),
    ],
)
def test_recover_refuses_hostile_data_in_one_line(hostile: Path, path: str, says: bytes) -> None:
    proc = recover(hostile, "latest", path)
    assert proc.returncode != 0 and says in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and b"Traceback" not in proc.stderr


def test_recover_writes_permission_bits_only(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "setuid.out"
    assert recovered(hostile, "latest", "/setuid", "-o", str(out)) == b""
    assert out.stat().st_mode & 0o7777 == 0o755
    assert recovered(hostile, "latest", "/good.txt") == b"good\n"


def test_recover_refuses_a_pack_id_that_is_a_path(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "repo")
    save_snapshot(repo, tree_of(repo, [file_node(repo, b"good.txt", b"good\n")]))
    forged = {"id": "../../../../../dev/zero", "blobs": []}
    repo.save_document("index", json.dumps({"packs": [forged]}).encode())
    proc = recover(tmp_path / "repo", "latest", "/good.txt")
    assert proc.returncode != 0 and b"is not 64 lowercase hex digits" in proc.stderr
