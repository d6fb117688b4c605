"""``mount``: browse every snapshot as a read-only file system (restic's ``mount``)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import print_json
from safehold.cli.snapshots_cmd import HostOpt, PathOpt, TagOpt
from safehold.errors import InvalidArgument

__all__ = ["mount"]

# libfuse installs its own handlers (unmount, then return) only for signals left at their
# default; mfusepy resets SIGINT itself, and these would otherwise stay with Python, whose
# handler cannot run while the main thread waits inside libfuse.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@app.command()
def mount(
    ctx: typer.Context,
    mountpoint: Annotated[str, typer.Argument(help="An existing directory.")],
    host: HostOpt = None,
    tag: TagOpt = None,
    path: PathOpt = None,
    allow_other: Annotated[
        bool, typer.Option("--allow-other", help="Let other users read the mount.")
    ] = False,
) -> None:
    """Browse every snapshot as a read-only FUSE file system until umount, Ctrl-C or SIGTERM."""
    from safehold.archive.mount import SnapshotFS, load_fuse, serve  # ctypes: not for --help

    s = settings(ctx)
    if not os.path.isdir(mountpoint):
        raise InvalidArgument(f"mount point {mountpoint} is not a directory")
    load_fuse()  # no libfuse: say so before asking for a password
    repo = s.open_repository(lock="shared")
    chosen = [x for x in repo.list_snapshots() if x.matches(host or [], tag or [], path or [])]

    def ready() -> None:
        if s.json:
            print_json(
                {"message_type": "mounted", "mountpoint": mountpoint, "snapshots": len(chosen)}
            )
        elif not s.quiet:
            sys.stderr.write(
                f"serving {len(chosen)} snapshot{'' if len(chosen) == 1 else 's'} at "
                f"{mountpoint}; stop with Ctrl-C or `umount {mountpoint}`\n"
            )
            sys.stderr.flush()

    previous = {sig: signal.signal(sig, signal.SIG_DFL) for sig in STOP_SIGNALS}
    try:
        serve(SnapshotFS(repo, chosen, ready), mountpoint, allow_other)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if s.json:
        print_json({"message_type": "summary", "mountpoint": mountpoint, "unmounted": True})
    elif not s.quiet:
        sys.stderr.write(f"unmounted {mountpoint}\n")
