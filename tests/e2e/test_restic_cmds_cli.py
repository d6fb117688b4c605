"""The commands a restic user reaches for: find, tag, cat, snapshots --latest/--compact/
--group-by, as a user runs them (real processes, a real repository)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import CLI
from tests.e2e.test_cli import backup, json_doc, json_lines, snapshots


def two_hosts(cli: CLI, tmp_path: Path) -> tuple[Path, list[str]]:
    """Three snapshots: two of ``data`` from host h1, one of ``data/etc`` from h2."""
    data = tmp_path / "data"
    (data / "etc").mkdir(parents=True)
    (data / "app.conf").write_text("port=1\n")
    (data / "etc" / "db.conf").write_text("user=x\n")
    (data / "etc" / "Secret.KEY").write_bytes(b"k" * 100)
    cli.init()
    ids = [backup(cli, data, "--host", "h1", "--time", "2024-01-01T00:00:00Z")["snapshot_id"]]
    (data / "new.conf").write_text("n\n")
    ids.append(backup(cli, data, "--host", "h1", "--tag", "t")["snapshot_id"])
    ids.append(backup(cli, data / "etc", "--host", "h2")["snapshot_id"])
    return data, ids


def fail_line(cli: CLI, *args: str) -> str:
    """A command that must fail with exit 1 and exactly one line on stderr."""
    proc = cli.run(*args, check=False)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, lines)
    return lines[0]


def test_find(cli: CLI, tmp_path: Path) -> None:
    data, ids = two_hosts(cli, tmp_path)
    docs = json_doc(cli.run("--json", "find", "*.conf"))
    assert {d["snapshot"]: [m["path"] for m in d["matches"]] for d in docs} == {
        ids[0]: [str(data / "app.conf"), str(data / "etc" / "db.conf")],
        ids[1]: [str(data / "app.conf"), str(data / "etc" / "db.conf"), str(data / "new.conf")],
        ids[2]: [str(data / "etc" / "db.conf")],
    }
    assert all(d["hits"] == len(d["matches"]) for d in docs)
    text = cli.run("find", "-i", "secret.key", "--snapshot", ids[0][:8], "--long").stdout.decode()
    assert f"Found 1 match in snapshot {ids[0][:8]}" in text and "100" in text, text
    assert str(data / "etc" / "Secret.KEY") in text
    assert json_doc(cli.run("--json", "find", "secret.key")) == []  # case matters without -i
    only_h2 = json_doc(cli.run("--json", "find", "*.conf", "--host", "h2"))
    assert [d["snapshot"] for d in only_h2] == [ids[2]]

    assert "invalid pattern '[z-a]'" in fail_line(cli, "find", "[z-a]")
    assert "No snapshot matches 'deadbeef'" in fail_line(cli, "find", "x", "-s", "deadbeef")


def test_tag(cli: CLI, tmp_path: Path) -> None:
    _, ids = two_hosts(cli, tmp_path)
    doc = json_doc(cli.run("--json", "tag", "--add", "keep,audit", ids[0][:8]))
    (change,) = doc["snapshots"]
    assert doc["changed"] == 1 and change["id"] == ids[0] and change["tags"] == ["audit", "keep"]
    by_id = {s["id"]: s for s in snapshots(cli)}
    assert ids[0] not in by_id, "the old document is deleted"
    new = by_id[change["new_id"]]
    assert new["tags"] == ["audit", "keep"] and new["original"] == ids[0]

    # no ids: every snapshot the filters match
    text = cli.run("tag", "--host", "h1", "--remove", "audit", "--add", "h1").stdout.decode()
    assert "changed the tags of 2 of 2 snapshots" in text, text
    assert sorted(tuple(s["tags"]) for s in snapshots(cli, "--host", "h1")) == [
        ("h1", "keep"),
        ("h1", "t"),
    ]
    cli.run("tag", "--set", "", "--tag", "keep")
    assert [s["tags"] for s in snapshots(cli, "--host", "h1")] == [[], ["h1", "t"]]
    # the tree is untouched: the retagged snapshot still restores
    assert cli.run("check").returncode == 0

    assert "nothing to do" in fail_line(cli, "tag", "latest")
    assert "--set cannot be combined" in fail_line(cli, "tag", "--set", "a", "--add", "b")
    assert "No snapshot matches 'nope'" in fail_line(cli, "tag", "--add", "x", "nope")


def test_cat(cli: CLI, tmp_path: Path) -> None:
    data, ids = two_hosts(cli, tmp_path)
    config = json_doc(cli.run("cat", "config"))
    assert set(config) >= {"id", "chunk_min", "chunk_avg", "chunk_max", "pack_size"}
    snap = json_doc(cli.run("--json", "cat", "snapshot", ids[1][:10]))
    listed = {s["id"]: s for s in snapshots(cli)}[ids[1]]
    assert snap["tree"] == listed["tree"] and snap["tags"] == ["t"] and "id" not in snap
    assert json_doc(cli.run("cat", "snapshot", "latest"))["paths"] == [str(data / "etc")]

    tree = json_doc(cli.run("cat", "tree", f"{ids[0]}:{data / 'etc'}"))
    by_name = {n["name"]: n for n in tree["nodes"]}
    assert set(by_name) == {"db.conf", "Secret.KEY"}
    assert json_doc(cli.run("cat", "tree", listed["tree"]))["nodes"][0]["type"] == "dir"
    (blob,) = by_name["Secret.KEY"]["content"]
    assert cli.run("cat", "blob", blob).stdout == b"k" * 100

    indexes = [
        json_doc(cli.run("cat", "index", p.name[:8])) for p in (cli.repo / "index").iterdir()
    ]
    assert any(b["id"] == blob for i in indexes for p in i["packs"] for b in p["blobs"])
    key_id = next((cli.repo / "keys").iterdir()).name
    assert json_doc(cli.run("cat", "key", key_id))["kdf"] == "argon2id"

    assert "cannot cat 'pack'" in fail_line(cli, "cat", "pack", "x")
    assert "invalid blob id 'abc'" in fail_line(cli, "cat", "blob", "abc")
    assert "no snapshot 'ffff'" in fail_line(cli, "cat", "snapshot", "ffff")
    assert "is not a directory" in fail_line(cli, "cat", "tree", f"{ids[0]}:{data / 'app.conf'}")


def test_snapshots_latest_compact_group_by(cli: CLI, tmp_path: Path) -> None:
    data, ids = two_hosts(cli, tmp_path)
    assert [s["id"] for s in snapshots(cli, "--latest", "1")] == ids[1:]
    assert [s["id"] for s in snapshots(cli, "--latest", "2")] == ids

    compact = cli.run("snapshots", "--compact").stdout.decode()
    assert "Paths" not in compact and str(data) not in compact and ids[0][:8] in compact
    assert "3 snapshots" in compact

    groups = json_doc(cli.run("--json", "snapshots", "--group-by", "host"))
    assert [(g["group_key"]["hostname"], [s["id"] for s in g["snapshots"]]) for g in groups] == [
        ("h1", ids[:2]),
        ("h2", ids[2:]),
    ]
    assert groups[0]["group_key"]["paths"] is None
    text = cli.run("snapshots", "-g", "host,paths", "--latest", "1").stdout.decode()
    assert f"snapshots of host h1; paths {data}" in text and ids[0][:8] not in text, text
    assert "cannot group by colour" in fail_line(cli, "snapshots", "--group-by", "colour")


def test_diff_metadata(cli: CLI, tmp_path: Path) -> None:
    data, ids = two_hosts(cli, tmp_path)
    os.utime(data / "app.conf", ns=(5, 5))
    third = backup(cli, data, "--host", "h1")["snapshot_id"]
    plain = cli.run("diff", ids[1], third).stdout.decode()
    assert "app.conf" not in plain and "0 modified" in plain
    with_meta = cli.run("diff", "--metadata", ids[1], third).stdout.decode()
    assert f"U  {data / 'app.conf'}" in with_meta and "metadata only" in with_meta
    docs = json_lines(cli.run("--json", "diff", "--metadata", ids[1], third))
    assert {"change": "U", "path": str(data / "app.conf"), "type": "file"} in docs
    assert docs[-1]["metadata_changed"] >= 1  # the file (and /tmp itself, if it moved on)


def test_rewrite_cuts_a_leaked_secret_out(cli: CLI, tmp_path: Path) -> None:
    data, ids = two_hosts(cli, tmp_path)
    secret = data / "etc" / "Secret.KEY"
    dry = cli.run("rewrite", "--iexclude", "secret.key", "--dry-run").stdout.decode()
    assert "3 of 3 snapshots would be rewritten" in dry and f"cut {secret}" in dry, dry
    assert {s["id"] for s in snapshots(cli)} == set(ids)

    doc = json_doc(cli.run("--json", "rewrite", "-e", "Secret.KEY", "--forget", "--host", "h1"))
    assert doc["rewritten"] == 2 and all(r["forgotten"] for r in doc["snapshots"])
    now = snapshots(cli)
    assert {s["original"] for s in now if s["hostname"] == "h1"} == set(ids[:2])
    assert all("rewrite" in s["tags"] for s in now if s["hostname"] == "h1")
    assert [d["snapshot"] for d in json_doc(cli.run("--json", "find", "Secret.KEY"))] == [ids[2]]
    target = tmp_path / "r"
    cli.run("restore", "latest", "--host", "h1", "-t", target)
    assert (
        not (target / str(secret)[1:]).exists() and (target / str(data)[1:] / "app.conf").exists()
    )
    assert cli.run("check").returncode == 0

    assert "nothing to do" in fail_line(cli, "rewrite", "latest")
    assert "invalid pattern" in fail_line(cli, "rewrite", "-e", "[z-a]")
    assert "No snapshot matches 'abcdef12'" in fail_line(cli, "rewrite", "-e", "x", "abcdef12")
