"""``ls``, ``diff``, ``dump`` and ``stats``: looking into snapshots without restoring."""

from __future__ import annotations

import os
import stat as statmod
import sys
from contextlib import ExitStack
from typing import Annotated

import typer

from safehold.archive.browse import (
    diff_trees,
    dump_file,
    entry_doc,
    find_node,
    node_time,
    size_stats,
    walk_path,
)
from safehold.archive.dump_archive import ARCHIVE_FORMATS, dump_archive
from safehold.archive.extent import NOTHING_STORED, allowance, bounded
from safehold.archive.tree import Node
from safehold.cli.app import app, settings
from safehold.cli.output import human_size, out, print_json, quoted
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt, resolve_snapshot
from safehold.errors import InvalidArgument

__all__ = ["diff", "dump", "entry_doc", "long_line", "ls", "stats"]


def _mode_text(node: Node) -> str:
    kind = {
        "dir": "d",
        "symlink": "l",
        "fifo": "p",
        "chardev": "c",
        "blockdev": "b",
        "socket": "s",
    }.get(node.type, "-")
    return kind + statmod.filemode(node.mode)[1:]


def long_line(path: bytes, node: Node, terminal: bool = False) -> str:
    """An entry as ``ls --long`` shows it: mode, owner, group, size, time, path."""
    owner, group = str(node.user or node.uid), str(node.group or node.gid)
    if terminal:
        owner, group = quoted(owner.encode(errors="surrogateescape")), quoted(group.encode())
    return (
        f"{_mode_text(node)} {owner:>8} {group:>8} "
        f"{node.size:>12} {node_time(node.mtime_ns)[:19]} {shown(path, terminal)}"
    )


def shown(path: bytes, terminal: bool) -> str:
    """A path as printed: exact into a pipe, quoted on a terminal (``quoted``)."""
    return quoted(path) if terminal else os.fsdecode(path)


@app.command()
def ls(
    ctx: typer.Context,
    snapshot: str,
    path: Annotated[str, typer.Argument(help="Absolute path inside the snapshot.")] = "/",
    long: Annotated[bool, typer.Option("--long", "-l", help="Mode, owner, size, time.")] = False,
    host: HostOpt = None,
    tag: TagOpt = None,
    path_filter: PathOpt = None,
) -> None:
    """List the entries of a snapshot under PATH."""
    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    snap = resolve_snapshot(repo, snapshot, host, tag, path_filter)
    for entry_path, node in walk_path(repo, snap, path):
        if s.json:
            print_json(entry_doc(entry_path, node))
        elif long:
            out().print(long_line(entry_path, node, out().is_terminal), markup=False)
        else:
            out().print(shown(entry_path, out().is_terminal), markup=False)


@app.command()
def diff(
    ctx: typer.Context,
    snapshot1: str,
    snapshot2: str,
    metadata: Annotated[
        bool,
        typer.Option("--metadata", help="Also U: same content, other mtime, owner or xattrs."),
    ] = False,
) -> None:
    """Show what changed between two snapshots: + added, - removed, M modified, T type."""
    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    a, b = resolve_snapshot(repo, snapshot1), resolve_snapshot(repo, snapshot2)
    counts = {"+": 0, "-": 0, "M": 0, "T": 0, "U": 0}
    # diff reads only the trees that differ: instead of measuring both snapshots first,
    # it stops where they declare (a tree-sharing bomb would list changes without end)
    limit = allowance(a, NOTHING_STORED) + allowance(b, NOTHING_STORED)
    changes = diff_trees(repo, a.tree, b.tree, metadata=metadata)
    for change, path, node in bounded(changes, limit, f"{a.short_id}..{b.short_id}"):
        counts[change] += 1
        if s.json:
            print_json({"change": change, "path": os.fsdecode(path), "type": node.type})
        else:
            out().print(f"{change}  {os.fsdecode(path)}", markup=False)
    if s.json:
        print_json(
            {
                "message_type": "summary",
                "added": counts["+"],
                "removed": counts["-"],
                "modified": counts["M"],
                "type_changed": counts["T"],
                **({"metadata_changed": counts["U"]} if metadata else {}),
            }
        )
    elif not s.quiet:
        out().print(
            f"{counts['+']} added, {counts['-']} removed, "
            f"{counts['M']} modified, {counts['T']} changed type"
            + (f", {counts['U']} metadata only" if metadata else "")
        )


@app.command()
def dump(
    ctx: typer.Context,
    snapshot: str,
    path: Annotated[
        str, typer.Argument(help="Absolute path in the snapshot: a file, or a directory.")
    ],
    archive: Annotated[
        str, typer.Option("--archive", "-a", help="For a directory: tar or zip.")
    ] = "tar",
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Write here, not to standard output.")
    ] = None,
    host: HostOpt = None,
    tag: TagOpt = None,
    path_filter: PathOpt = None,
) -> None:
    """Write a file's contents, or a directory as a tar (or zip) archive, to standard output."""
    s = settings(ctx)
    if archive not in ARCHIVE_FORMATS:
        raise InvalidArgument(f"--archive must be one of {', '.join(ARCHIVE_FORMATS)}")
    if target is None and sys.stdout.isatty():
        raise InvalidArgument("standard output is a terminal: redirect it, or use --target FILE")
    repo = s.open_repository(lock="shared")
    snap = resolve_snapshot(repo, snapshot, host, tag, path_filter)
    node = find_node(repo, snap, path) if path.rstrip("/") else None
    with ExitStack() as stack:
        sink = stack.enter_context(open(target, "wb")) if target else sys.stdout.buffer
        if node is not None and node.type != "dir":
            written, kind = dump_file(repo, node, sink), "file"
            entries = files = 1
        else:
            stats = dump_archive(repo, snap, path, sink, archive)
            written, kind, entries, files = stats.bytes, archive, stats.entries, stats.files
        sink.flush()
    if target is None:  # standard output holds the data: nothing else goes there
        return
    if s.json:
        print_json(
            {"message_type": "summary", "snapshot_id": snap.id, "path": path, "format": kind}
            | {"target": target, "entries": entries, "files": files, "bytes": written}
        )
    elif not s.quiet:
        out().print(
            f"wrote {path} of snapshot {snap.short_id} to {target}"
            + (
                f" ({kind}: {entries} entries, {human_size(written)} of files)"
                if kind != "file"
                else ""
            ),
            markup=False,
        )


@app.command()
def stats(
    ctx: typer.Context,
    snapshot: Annotated[str | None, typer.Argument(help="One snapshot; all by default.")] = None,
) -> None:
    """Logical size, stored size and deduplication ratio."""
    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    chosen = [resolve_snapshot(repo, snapshot)] if snapshot else repo.list_snapshots()
    st = size_stats(repo, chosen)
    doc = {
        "snapshots_count": st.snapshots,
        "total_file_count": st.files,
        "total_size": st.logical_size,
        "total_uncompressed_size": st.unique_raw_size,
        "total_stored_size": st.stored_size,
        "total_blob_count": st.blobs,
        "dedup_ratio": round(st.dedup_ratio, 3),
        "compression_ratio": round(st.compression_ratio, 3),
        "space_saving_ratio": round(st.logical_size / st.stored_size, 3) if st.stored_size else 1.0,
    }
    if s.json:
        print_json(doc)
        return
    out().print(
        f"Snapshots:        {st.snapshots}\n"
        f"Files:            {st.files}\n"
        f"Logical size:     {human_size(st.logical_size)}\n"
        f"Unique data:      {human_size(st.unique_raw_size)} (dedup ratio {st.dedup_ratio:.2f}x)\n"
        f"Stored size:      {human_size(st.stored_size)} "
        f"(compression ratio {st.compression_ratio:.2f}x)"
    )
