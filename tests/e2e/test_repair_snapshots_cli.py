"""`safehold repair snapshots` as a user runs it: after losing packs, then check and restore."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.conftest import CLI
from tests.e2e.test_check_cli import problem_lines
from tests.e2e.test_cli import backup, json_doc, random_bytes, restored, snapshots
from tests.e2e.test_faults import packs, two_snapshots


def listing(repo: Path) -> dict[str, str]:
    """Every object of the repository with a digest of its bytes."""
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in repo.rglob("*")
        if p.is_file() and p.parts[len(repo.parts)] != "locks"
    }


def repair_doc(cli: CLI, *args: str, code: int = 0) -> dict[str, Any]:
    proc = cli.run("--json", "repair", "snapshots", *args, check=False)
    assert proc.returncode == code, proc.stderr.decode(errors="replace")
    doc = json_doc(proc)
    assert doc["message_type"] == "repair_snapshots" and doc["ok"] is (code == 0)
    return doc  # type: ignore[no-any-return]


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc["snapshots"]}


def test_lost_file_data_repaired_then_check_passes_and_rest_restores(
    cli: CLI, tmp_path: Path
) -> None:
    data, victim, victim_pack = two_snapshots(cli, tmp_path)
    first, second = (s["id"] for s in snapshots(cli))
    victim_pack.unlink()
    cli.run("repair", "index")
    assert cli.run("check", check=False).returncode == 1

    before = listing(cli.repo)
    dry = cli.run("repair", "snapshots", "--dry-run")
    assert listing(cli.repo) == before
    text = dry.stdout.decode()
    assert f"snapshot {second[:8]}: would be repaired" in text, text
    assert f"file {victim}: 1 of 1 blobs lost; 0 of 400000 bytes kept" in text, text
    assert (
        f"snapshot {first[:8]}: unchanged" in text
        and f"would write {len(data.parts)} trees" in text
    )  # "/" and each dir down to data, text

    doc = repair_doc(cli)
    assert statuses(doc) == {first: "unchanged", second: "repaired"}
    (entry,) = [s for s in doc["snapshots"] if s["id"] == second]
    assert entry["changes"] == [
        {"path": str(victim), "kind": "file", "detail": "1 of 1 blobs lost; 0 of 400000 bytes kept"}
    ]
    listed = {s["id"]: s for s in snapshots(cli)}
    assert set(listed) == {first, second, entry["new_id"]}
    assert listed[entry["new_id"]]["tags"] == ["repaired"]
    assert listed[entry["new_id"]]["time"] == listed[second]["time"]

    doc = repair_doc(cli, "--forget")
    assert statuses(doc) == {
        first: "unchanged",
        second: "already_repaired",
        entry["new_id"]: "unchanged",
    }
    assert [s["id"] for s in snapshots(cli)] == [first, entry["new_id"]]
    check = json_doc(cli.run("--json", "check", "--read-data"))
    assert check["ok"] is True and check["warnings"] == [], check

    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", target)
    assert restored(target, data / "good.bin").read_bytes() == (data / "good.bin").read_bytes()
    assert restored(target, victim).read_bytes() == b""  # what is left of it: nothing
    target1 = tmp_path / "restore1"
    cli.run("restore", first, "--target", target1)
    assert restored(target1, data / "good.bin").read_bytes() == (data / "good.bin").read_bytes()

    again = repair_doc(cli)
    assert set(statuses(again).values()) == {"unchanged"} and again["trees_written"] == 0


def test_lost_root_exits_1_and_lost_subtree_becomes_empty(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "s.bin").write_bytes(random_bytes(50_000, seed=3))
    (data / "top.txt").write_text("top\n")
    cli.init()
    backup(cli, data)
    (first_trees,) = [p for p in packs(cli.repo) if p.stat().st_size < 20_000]
    (data / "later.txt").write_text("later\n")
    backup(cli, data)
    first, second = (s["id"] for s in snapshots(cli))
    first_trees.unlink()  # the first snapshot's root, and sub/ that the second reuses
    cli.run("repair", "index")

    proc = cli.run("repair", "snapshots", check=False)
    assert proc.returncode == 1
    lines = problem_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(f"error: snapshot {first[:8]}: root tree")
    text = proc.stdout.decode()
    assert f"dir {data / 'sub'}: cannot be loaded" in text and "now an empty directory" in text

    doc = repair_doc(cli, "--forget", code=1)
    lost = next(s for s in doc["snapshots"] if s["id"] == first)
    assert lost["status"] == "unrepairable" and lost["forgotten"] is True
    remaining = snapshots(cli)
    assert len(remaining) == 1 and remaining[0]["tags"] == ["repaired"]
    assert json_doc(cli.run("--json", "check"))["ok"] is True
    assert repair_doc(cli)["trees_written"] == 0

    target = tmp_path / "restore"
    cli.run("restore", "latest", "--target", target)
    for name in ("top.txt", "later.txt"):
        assert restored(target, data / name).read_bytes() == (data / name).read_bytes()
    assert list(restored(target, data / "sub").iterdir()) == []
    assert second not in {s["id"] for s in remaining}


def test_unreadable_snapshot_document_removed_only_when_named(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("f\n")
    cli.init()
    sid = backup(cli, data)["snapshot_id"]
    doc = cli.repo / "snapshots" / sid
    doc.write_bytes(doc.read_bytes()[:-1])

    proc = cli.run("repair", "snapshots", "--forget", check=False)
    assert proc.returncode == 1 and doc.exists()
    assert problem_lines(proc) == [
        f"error: snapshot {sid[:8]}: snapshot document cannot be loaded;"
        " name it with --forget to delete it"
    ]
    proc = cli.run("repair", "snapshots", "--forget", sid[:8], check=False)
    assert proc.returncode == 1 and not doc.exists()
    assert "unreadable, original forgotten" in proc.stdout.decode()
    assert cli.run("repair", "snapshots").returncode == 0
