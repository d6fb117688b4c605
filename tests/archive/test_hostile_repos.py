"""A repository is untrusted input: no hang, no crash, bounded memory, check agrees with
restore (issue 13).

Each scenario builds one hostile repository (once per module) and runs the commands an
attacker would aim at: restore, ls, check, check --read-data, dump, stats, in a child
process under a timeout and a 1 GiB address-space limit (tests/archive/hostile.py). Every
command must end with one clear line per problem, and restore everything restorable.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import stat
import subprocess
from pathlib import Path

import pytest

from safehold.archive.tree import Node, node_doc
from safehold.repo.limits import MAX_DEPTH, MAX_TREE_BYTES
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository, pack_key
from tests.archive.helpers import deep_tree
from tests.archive.hostile import (
    CHUNK_MAX,
    file_node,
    hostile_repo,
    index_doc,
    plant_blob,
    raw_block,
    remove_tree,
    rle_frame,
    run,
    save_raw_tree_text,
    save_snapshot,
    tree_of,
    zstd_frame,
)
from tests.conftest import PASSWORD, SAFEHOLD

GOOD = b"good content\n"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error")]


# ---- zstd frames that lie, or tell the truth about a bomb ---------------------------------


@pytest.fixture(scope="module")
def zstd_lies(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = hostile_repo(tmp_path_factory.mktemp("zstd") / "repo")
    liar = plant_blob(repo, b"\x01" + zstd_frame(1 << 40, raw_block(b"abc")), 100)
    bomb = plant_blob(repo, b"\x01" + rle_frame(1 << 30, 1 << 30), 1 << 30)
    quiet_bomb = plant_blob(repo, b"\x01" + rle_frame(64 << 20, None), 1000)
    tree_bomb = plant_blob(repo, b"\x01" + rle_frame(1 << 30, 1 << 30), 1 << 30, BlobType.TREE)
    tree = tree_of(
        repo,
        [
            file_node(repo, b"good.txt", GOOD),
            Node(name=b"liar.bin", type="file", size=100, content=[liar]),
            Node(name=b"bomb.bin", type="file", size=1 << 30, content=[bomb]),
            Node(name=b"quiet.bin", type="file", size=1000, content=[quiet_bomb]),
            Node(name=b"tree-bomb", type="dir", mode=0o755, subtree=tree_bomb.hex()),
        ],
    )
    save_snapshot(repo, tree)
    return repo


def test_lying_and_bombing_zstd_frames_fail_only_their_files(
    zstd_lies: Repository, tmp_path: Path
) -> None:
    ran = run(zstd_lies, "restore", "latest", "--target", tmp_path)
    assert ran.code == 1
    assert (tmp_path / "good.txt").read_bytes() == GOOD
    errors = error_lines(ran.err)
    assert len(errors) == 4, ran.err
    assert any("tree-bomb" in e and f"the {MAX_TREE_BYTES} a reader" in e for e in errors)
    assert any("liar.bin" in e and "declares 1099511627776 bytes" in e for e in errors)
    assert any("bomb.bin" in e and f"the {CHUNK_MAX} a reader accepts" in e for e in errors)
    assert any("quiet.bin" in e and "expected 1000 bytes" in e for e in errors)
    assert not (tmp_path / "liar.bin").exists()


def test_check_read_data_and_dump_name_the_bad_blobs(zstd_lies: Repository) -> None:
    ran = run(zstd_lies, "check", "--read-data")
    assert ran.code == 1
    assert len(error_lines(ran.err)) == 4, ran.err
    assert "4 errors" in ran.out.decode()
    dumped = run(zstd_lies, "dump", "latest", "/liar.bin")
    assert dumped.code == 1 and len(dumped.lines) == 1 and "declares" in dumped.err
    assert run(zstd_lies, "dump", "latest", "/good.txt").out == GOOD


# ---- special files planted in a local store ------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = hostile_repo(tmp_path_factory.mktemp("planted") / "repo")
    fifo_node = file_node(repo, b"fifo.bin", b"in a pack that becomes a FIFO\n")
    zero_node = file_node(repo, b"zero.bin", b"in a pack that becomes /dev/zero\n")
    tree = tree_of(repo, [file_node(repo, b"good.txt", GOOD), fifo_node, zero_node])
    save_snapshot(repo, tree)
    root = Path(repo.store.location)
    fifo_pack = root / pack_key(repo.locate(fifo_node.content[0]).pack)
    zero_pack = root / pack_key(repo.locate(zero_node.content[0]).pack)
    fifo_pack.unlink()
    os.mkfifo(fifo_pack)
    zero_pack.unlink()
    zero_pack.symlink_to("/dev/zero")
    return repo


def test_fifo_and_dev_zero_packs_are_damage_not_a_hang(planted: Repository, tmp_path: Path) -> None:
    ran = run(planted, "restore", "latest", "--target", tmp_path, timeout=60)
    assert ran.code == 1
    assert (tmp_path / "good.txt").read_bytes() == GOOD
    errors = error_lines(ran.err)
    assert len(errors) == 2, ran.err
    assert any("fifo.bin" in e and "a FIFO, not a regular file" in e for e in errors), errors
    assert any("zero.bin" in e and "symbolic link" in e for e in errors)
    dumped = run(planted, "dump", "latest", "/fifo.bin", timeout=60)
    assert dumped.code == 1 and "FIFO" in dumped.err
    checked = run(planted, "check", "--read-data", timeout=60)
    assert checked.code == 1
    assert checked.err.count("fifo.bin") >= 1 and checked.err.count("zero.bin") >= 1


# ---- index and snapshot documents that lie ------------------------------------------------


@pytest.fixture(scope="module")
def lying_documents(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = hostile_repo(tmp_path_factory.mktemp("documents") / "repo")
    huge_data = b"claims to be huge\n"
    huge = file_node(repo, b"huge.bin", huge_data)
    good = save_snapshot(repo, tree_of(repo, [file_node(repo, b"good.txt", GOOD), huge]))
    loc = repo.locate(huge.content[0])
    blob = {"id": os.urandom(32).hex(), "type": "data", "offset": 0, "length": 100}
    blob["raw_length"] = 10
    for lie in (
        {"length": 1 << 40},  # beyond the u32 of a pack header
        {"offset": "0"},
        {"type": "both"},
        {"id": "AB" * 32},
        {"id": 7},
    ):
        repo.save_document("index", index_doc([{"id": loc.pack, "blobs": [blob | lie]}]))
    repo.save_document("index", b'{"packs": {"not": "a list"}}')
    for lie in ({"tree": 12345}, {"paths": "/etc"}, {"time": None}, {"tree": "zz" * 32}):
        doc = json.loads(good.to_bytes()) | lie
        repo.save_document("snapshots", json.dumps(doc).encode())
    # a valid index entry whose length runs far beyond the pack: served first, as it sorts
    # first among the documents, it must cost a "truncated" line, not 4 GiB of memory.
    # Written last, and sealed again (a fresh nonce, a fresh id) until its id sorts first.
    entry = {"id": huge.content[0].hex(), "type": "data", "offset": 0, "length": 2**32 - 1}
    entry["raw_length"] = len(huge_data)
    for _ in range(1000):
        object_id = repo.save_document("index", index_doc([{"id": loc.pack, "blobs": [entry]}]))
        if object_id == min(i.key.removeprefix("index/") for i in repo.store.list("index/")):
            break
        repo.store.delete(f"index/{object_id}")
    else:
        raise AssertionError("no seal of the lying index document sorted first")
    return repo


def test_bad_documents_are_named_and_the_others_still_work(
    lying_documents: Repository, tmp_path: Path
) -> None:
    listed = run(lying_documents, "--json", "snapshots")
    assert listed.code == 0
    (only,) = json.loads(listed.out)
    assert only["paths"] == ["/h"]
    assert len(listed.lines) == 4 and all("snapshots/" in line for line in listed.lines)
    restored = run(lying_documents, "restore", "latest", "--target", tmp_path)
    assert (tmp_path / "good.txt").read_bytes() == GOOD
    warnings = [line for line in restored.lines if line.startswith("warning")]
    assert len(warnings) == 6 and all("index/" in w for w in warnings), restored.err
    assert restored.code == 1 and "huge.bin" in restored.err and "truncated" in restored.err
    dumped = run(lying_documents, "dump", "latest", "/huge.bin")
    assert dumped.code == 1 and "truncated" in dumped.err
    assert run(lying_documents, "stats").code == 0
    checked = run(lying_documents, "check")
    assert checked.code == 1
    assert sum("index document cannot be loaded" in line for line in checked.lines) == 6
    assert sum("snapshot cannot be loaded" in line for line in checked.lines) == 4


# ---- trees that expand, repeat or descend without end -------------------------------------

BOMB_LEVELS = 41


@pytest.fixture(scope="module")
def tree_bomb(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    """41 trees of two entries naming the tree below: 2^42 paths; one lost blob at the
    bottom makes check attribute damage."""
    repo = hostile_repo(tmp_path_factory.mktemp("bomb") / "repo")
    lost = Node(name=b"lost", type="file", size=5, content=[os.urandom(32)])
    tree = tree_of(repo, [lost])
    for _ in range(BOMB_LEVELS):
        subdirs = [Node(name=n, type="dir", mode=0o755, subtree=tree) for n in (b"a", b"b")]
        tree = tree_of(repo, subdirs)
    save_snapshot(repo, tree, total_files_processed=10)
    return repo


def test_tree_bomb_is_refused_by_restore_and_ls(tree_bomb: Repository, tmp_path: Path) -> None:
    ran = run(tree_bomb, "restore", "latest", "--target", tmp_path, timeout=60)
    assert ran.code == 1 and len(ran.lines) == 1
    assert "expands to 2^42 entries" in ran.err and "refusing" in ran.err
    assert list(tmp_path.iterdir()) == []
    listed = run(tree_bomb, "ls", "latest", timeout=60)
    assert listed.code == 1 and listed.out == b"" and "expands to 2^42" in listed.err


def test_tree_bomb_check_visits_each_tree_once(tree_bomb: Repository) -> None:
    for args in (["check"], ["check", "--read-data"]):
        ran = run(tree_bomb, "--json", *args, timeout=60)
        assert ran.code == 1
        doc = json.loads(ran.out)
        assert doc["trees"] == BOMB_LEVELS + 1
        lost = next(e for e in doc["errors"] if "not in the index" in e["message"])
        assert 1 <= len(lost["paths"]) <= 20
        assert any("expands to 2^42" in e["message"] for e in doc["errors"])


WIDE = 300_000


def test_directories_shared_within_reason_are_restored(tmp_path: Path) -> None:
    """Identical directories are one tree: a snapshot may repeat it, within its summary."""
    repo = hostile_repo(tmp_path / "repo")
    shared = tree_of(repo, [file_node(repo, b"f", GOOD)])
    copies = [Node(name=b"copy%d" % i, type="dir", mode=0o755, subtree=shared) for i in range(50)]
    save_snapshot(repo, tree_of(repo, copies), total_files_processed=50, dirs_new=50)
    ran = run(repo, "restore", "latest", "--target", tmp_path / "target")
    assert ran.code == 0, ran.err
    assert (tmp_path / "target" / "copy49" / "f").read_bytes() == GOOD


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    """One tree of many identical entries: kilobytes stored, megabytes of JSON (the
    issue's two million take 2.3 GiB and 128 MB of error lines before the fix; fewer
    here keep the test quick)."""
    repo = hostile_repo(tmp_path_factory.mktemp("wide") / "repo")
    entry = b'{"name":"x","type":"fifo","mode":420}'
    text = b'{"nodes":[' + b",".join([entry] * WIDE) + b"]}"
    save_snapshot(repo, save_raw_tree_text(repo, text))
    return repo


def test_a_tree_repeating_one_entry_costs_a_few_lines(wide: Repository, tmp_path: Path) -> None:
    ran = run(wide, "restore", "latest", "--target", tmp_path)
    assert ran.code == 1
    assert stat.S_ISFIFO(os.lstat(tmp_path / "x").st_mode)
    assert len(ran.lines) <= 12 and f"{WIDE - 11} more bad entries" in ran.err, ran.err[-2000:]
    checked = run(wide, "check")
    assert checked.code == 1 and len(error_lines(checked.err)) == 11
    listed = run(wide, "ls", "latest")
    assert listed.code == 1 and len(listed.lines) == 1 and "appears twice" in listed.err


DEEP = 5_000  # the issue used 30,000; beyond MAX_DEPTH is what counts


def levels_below(top: Path) -> int:
    """How many directories "d" are nested below ``top`` (deeper than PATH_MAX allows)."""
    fd, levels = os.open(top, os.O_RDONLY | os.O_DIRECTORY), 0
    try:
        while "d" in os.listdir(fd):
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, levels = below, levels + 1
    finally:
        os.close(fd)
    return levels


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = hostile_repo(tmp_path_factory.mktemp("deep") / "repo")
    save_snapshot(repo, deep_tree(repo, DEEP))
    return repo


def test_a_very_deep_chain_is_cut_at_the_documented_depth(deep: Repository, tmp_path: Path) -> None:
    target = tmp_path / "target"
    try:
        ran = run(deep, "restore", "latest", "--target", target)
        assert levels_below(target) == MAX_DEPTH
    finally:  # pytest's clean-up of old temporary directories recurses: it could not
        remove_tree(target)
    assert ran.code == 1 and len(error_lines(ran.err)) == 1
    assert f"deeper than {MAX_DEPTH} directory levels" in ran.err
    listed = run(deep, "ls", "latest")
    assert listed.code == 1 and len(listed.lines) == 1 and str(MAX_DEPTH) in listed.err
    assert len(listed.out.splitlines()) == MAX_DEPTH
    checked = run(deep, "check")
    assert checked.code == 1 and f"{DEEP} levels deep" in checked.err


# ---- check agrees with restore ------------------------------------------------------------


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    """Entries restore refuses, a file whose size lies, an inode with two contents."""
    repo = hostile_repo(tmp_path_factory.mktemp("refused") / "repo")
    entries: list[dict[str, object]] = [
        {"name": name, "type": "fifo", "mode": 0o644} for name in ("..", "/x", "a/b", "", "n\0ul")
    ]
    entries.append({"name": "dup", "type": "fifo", "mode": 0o644})
    entries.append({"name": "dup", "type": "fifo", "mode": 0o600})
    small = b"39 bytes of content; size says 10^12.\n\n"
    liar = file_node(repo, b"size-liar", small, size=10**12)
    link_a = file_node(repo, b"link-a", b"first\n", links=2, inode=7, device=1)
    link_b = file_node(repo, b"link-b", b"second\n", links=2, inode=7, device=1)
    twin_a = file_node(repo, b"twin-a", b"same\n", links=2, inode=8, device=1)
    twin_b = file_node(repo, b"twin-b", b"same\n", links=2, inode=8, device=1)
    docs = entries + [node_doc(n) for n in (liar, link_a, link_b, twin_a, twin_b)]
    docs.append(node_doc(file_node(repo, b"ok", GOOD)))
    text = json.dumps({"nodes": docs}, separators=(",", ":")).encode()
    save_snapshot(repo, save_raw_tree_text(repo, text))
    return repo


def test_check_flags_what_restore_refuses(refused: Repository, tmp_path: Path) -> None:
    restored = run(refused, "restore", "latest", "--target", tmp_path)
    assert restored.code == 1
    assert (tmp_path / "ok").read_bytes() == GOOD
    refused_by_restore = error_lines(restored.err)
    checked = run(refused, "--json", "check")
    assert checked.code == 1
    problems = json.loads(checked.out)["errors"]
    # five unsafe names, the repeated one, the size that lies, the inode with two contents
    assert len(refused_by_restore) == 8, restored.err
    assert len(problems) == 8, problems
    for word in ("'..'", "'/x'", "'a/b'", "''", "duplicate", "10000000000", "inode 7"):
        assert any(word in p["message"] for p in problems), (word, problems)
    (links,) = [p for p in problems if "inode 7" in p["message"]]
    assert links["paths"] == ["/link-a", "/link-b"]


def test_a_size_that_lies_restores_the_content_as_stored(
    refused: Repository, tmp_path: Path
) -> None:
    ran = run(refused, "restore", "latest", "--target", tmp_path, "--include", "/size-liar")
    assert ran.code == 1 and len(ran.lines) == 1
    assert "disagrees with its content (39 bytes)" in ran.err
    restored = tmp_path / "size-liar"
    assert restored.stat().st_size == 39 and restored.read_bytes().endswith(b"10^12.\n\n")


def test_hard_links_only_between_files_of_equal_content(
    refused: Repository, tmp_path: Path
) -> None:
    ran = run(refused, "restore", "latest", "--target", tmp_path)
    assert "link-b: same inode as another file but other content" in ran.err
    assert (tmp_path / "link-a").read_bytes() == b"first\n"
    assert (tmp_path / "link-b").read_bytes() == b"second\n"
    assert os.stat(tmp_path / "link-a").st_ino != os.stat(tmp_path / "link-b").st_ino
    assert os.stat(tmp_path / "twin-a").st_ino == os.stat(tmp_path / "twin-b").st_ino


# ---- pack trailers of another format ------------------------------------------------------


def test_a_pack_trailer_of_another_version_is_refused(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "repo")
    data = b"in a pack of version 2\n"
    payload = b"\x00" + data
    blob = plant_blob(repo, payload, len(data), blob_id=repo.key.blob_id(data))
    pack = repo.locate(blob).pack
    path = Path(repo.store.location) / pack_key(pack)
    raw = path.read_bytes()
    path.write_bytes(raw[:-2] + bytes((2, 0)))  # version 2, key type 0
    node = Node(name=b"v2.bin", type="file", size=len(data), content=[blob])
    save_snapshot(repo, tree_of(repo, [node, file_node(repo, b"good.txt", GOOD)]))
    ran = run(repo, "restore", "latest", "--target", tmp_path / "target")
    assert ran.code == 1 and "unsupported pack version 2/key type 0" in ran.err
    assert (tmp_path / "target" / "good.txt").read_bytes() == GOOD
    assert not (tmp_path / "target" / "v2.bin").exists()
    checked = run(repo, "check", "--read-data")
    assert checked.code == 1 and "unsupported pack version 2" in checked.err


# ---- names meant for a terminal -----------------------------------------------------------

EVIL = b"title\x1b]0;owned\x07"
FORGED = b"x\n/etc/shadow"


@pytest.fixture(scope="module")
def evil_names(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = hostile_repo(tmp_path_factory.mktemp("names") / "repo")
    nodes = [Node(name=n, type="fifo", mode=0o644) for n in (EVIL, FORGED, b"caf\xe9")]
    save_snapshot(repo, tree_of(repo, nodes))
    return repo


def on_terminal(repo: Repository, *args: str) -> bytes:
    """What ``safehold ARGS`` writes to a terminal (a pseudo-terminal here)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    env |= {"SAFEHOLD_REPOSITORY": repo.store.location, "SAFEHOLD_PASSWORD": PASSWORD.decode()}
    proc = subprocess.run(
        [*SAFEHOLD, *args], stdout=follower, stderr=subprocess.PIPE, env=env, timeout=60
    )
    os.close(follower)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the terminal's writer is gone
        while chunk := os.read(leader, 65536):
            chunks.append(chunk)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks)


def test_ls_quotes_control_characters_on_a_terminal(evil_names: Repository) -> None:
    for args in (["ls", "latest"], ["ls", "--long", "latest"]):
        shown = on_terminal(evil_names, *args)
        assert b"\x1b]" not in shown and b"\x07" not in shown
        assert b"/title\\x1b]0;owned\\x07" in shown
        assert b"/x\\n/etc/shadow" in shown and b"/caf\\xe9" in shown
        assert len(shown.splitlines()) == 3
    exact = run(evil_names, "--json", "ls", "latest")
    paths = {os.fsencode(json.loads(line)["path"]) for line in exact.out.splitlines()}
    assert paths == {b"/" + EVIL, b"/" + FORGED, b"/caf\xe9"}


# ---- devices and setuid bits from another host ---------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and setuid-root need root")
def test_no_special_leaves_out_devices_and_setuid_bits(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "repo")
    nodes = [
        file_node(repo, b"su", b"#!/bin/sh\n", mode=0o6755),
        Node(name=b"mem", type="chardev", mode=0o666, rdev=os.makedev(1, 1)),
        file_node(repo, b"plain", GOOD),
    ]
    save_snapshot(repo, tree_of(repo, nodes))
    as_recorded = run(repo, "restore", "latest", "--target", tmp_path / "all")
    assert as_recorded.code == 0, as_recorded.err
    assert stat.S_IMODE(os.stat(tmp_path / "all" / "su").st_mode) == 0o6755
    assert stat.S_ISCHR(os.lstat(tmp_path / "all" / "mem").st_mode)
    careful = run(repo, "restore", "latest", "--no-special", "--target", tmp_path / "careful")
    assert careful.code == 0, careful.err
    assert stat.S_IMODE(os.stat(tmp_path / "careful" / "su").st_mode) == 0o755
    assert not (tmp_path / "careful" / "mem").exists()
    assert (tmp_path / "careful" / "plain").read_bytes() == GOOD


# ---- directories whose tree is lost --------------------------------------------------------


def test_a_directory_whose_tree_is_lost_is_reported_with_its_path(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "repo")
    lost = Node(name=b"lost-dir", type="dir", mode=0o755, subtree=os.urandom(32).hex())
    save_snapshot(repo, tree_of(repo, [lost, file_node(repo, b"plain", GOOD)]))
    ran = run(repo, "restore", "latest", "--target", tmp_path / "target")
    assert ran.code == 1 and error_lines(ran.err) == [
        line for line in ran.lines if "/lost-dir: " in line and "not in the index" in line
    ]
    assert (tmp_path / "target" / "plain").read_bytes() == GOOD
    checked = run(repo, "--json", "check")
    (problem,) = json.loads(checked.out)["errors"]
    assert problem["paths"] == ["/lost-dir"]


def test_an_error_about_a_forged_name_is_one_quoted_line(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "repo")
    forged = {"name": "x\nerror: /etc/passwd: lost\x1b[2J", "type": "fifo", "mode": "rw"}
    text = json.dumps({"nodes": [forged, node_doc(file_node(repo, b"ok", GOOD))]}).encode()
    save_snapshot(repo, save_raw_tree_text(repo, text))
    ran = run(repo, "restore", "latest", "--target", tmp_path / "target")
    assert ran.code == 1 and (tmp_path / "target" / "ok").read_bytes() == GOOD
    (line,) = error_lines(ran.err)
    assert (
        line.startswith("error: /x\\nerror: /etc/passwd: lost\\x1b[2J: ") and "\x1b" not in ran.err
    )


def test_tree_bomb_is_refused_under_include_and_in_a_dry_run(
    tree_bomb: Repository, tmp_path: Path
) -> None:
    """--include reads only the trees on its way (no measuring first): the walk counts."""
    ran = run(tree_bomb, "restore", "latest", "--target", tmp_path, "--include", "/a/a")
    assert ran.code == 1 and "expands to over" in ran.err and len(ran.lines) == 1
    dry = run(tree_bomb, "restore", "latest", "--target", tmp_path, "--dry-run")
    assert dry.code == 1 and "expands to 2^42 entries" in dry.err


def test_tree_bomb_is_refused_by_find(tree_bomb: Repository) -> None:
    ran = run(tree_bomb, "find", "lost", timeout=60)
    assert ran.code == 1 and "expands to 2^42 entries" in ran.err and len(ran.lines) == 1
