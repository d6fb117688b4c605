"""``backup``: files and directories, or a stream on standard input."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from safehold.archive.excludes import read_exclude_file
from safehold.archive.files_from import FilesFromMode, read_files_from
from safehold.archive.progress import Progress
from safehold.archive.snapshotter import BackupRequest, BackupResult, run_backup
from safehold.cli.app import app, settings
from safehold.cli.context import Settings
from safehold.cli.output import BarProgress, ErrorPrinter, count, human_size, out, print_json
from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository

__all__ = ["backup"]

EXIT_INCOMPLETE = 3
BUCKET_SCHEMES = ("s3://", "gs://", "az://")  # a live bucket, not a path (sources/bucket.py)


@app.command()
def backup(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(help="Files and directories.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag the snapshot.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Hostname to record.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-e", help="Exclude a pattern.")
    ] = None,
    iexclude: Annotated[
        list[str] | None, typer.Option("--iexclude", help="--exclude, whatever the case.")
    ] = None,
    files_from: Annotated[
        list[str] | None,
        typer.Option("--files-from", help="Paths (globs) from a file, one a line; '-': stdin."),
    ] = None,
    files_from_verbatim: Annotated[
        list[str] | None,
        typer.Option("--files-from-verbatim", help="Paths from a file, one a line, as written."),
    ] = None,
    files_from_raw: Annotated[
        list[str] | None,
        typer.Option("--files-from-raw", help="Paths from a file, NUL-separated."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Read everything, save nothing.")
    ] = False,
    exclude_file: Annotated[
        list[str] | None, typer.Option("--exclude-file", help="Read patterns from a file.")
    ] = None,
    exclude_caches: Annotated[
        bool, typer.Option("--exclude-caches", help="Skip directories with a CACHEDIR.TAG.")
    ] = False,
    one_file_system: Annotated[
        bool, typer.Option("--one-file-system", "-x", help="Do not cross file systems.")
    ] = False,
    time: Annotated[
        str | None, typer.Option("--time", help="Record this snapshot time (RFC 3339).")
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Back up standard input.")] = False,
    stdin_filename: Annotated[
        str, typer.Option("--stdin-filename", help="File name for --stdin.")
    ] = "stdin",
    stdin_from_command: Annotated[
        str | None,
        typer.Option(
            "--stdin-from-command",
            help="Back up this command's stdout (split like a shell, run without one).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-read every file, ignoring the parent.")
    ] = False,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Compare with this snapshot.")
    ] = None,
) -> None:
    """Create a snapshot of PATHS (or of standard input with --stdin)."""
    s = settings(ctx)
    if dry_run and stdin_from_command is not None:
        raise InvalidArgument("--dry-run is for files and --stdin")
    if stdin_from_command is not None:  # sources/command.py; docs/sources.md
        if stdin or paths:
            raise InvalidArgument("--stdin-from-command takes no paths and no --stdin")
        tags = [t for group in tag or [] for t in group.split(",") if t]
        _backup_command(s, stdin_from_command, _stdin_name(stdin_filename), tags, host, time)
        return
    if stdin and paths:
        raise InvalidArgument("--stdin takes no paths")
    if stdin and sys.stdin.isatty():
        raise InvalidArgument("--stdin needs data piped into standard input")
    patterns = list(exclude or [])
    for path in exclude_file or []:
        patterns.extend(read_exclude_file(path))
    paths = [*(paths or []), *listed_paths(files_from, files_from_verbatim, files_from_raw)]
    if dry_run and any(p.startswith(BUCKET_SCHEMES) for p in paths):
        raise InvalidArgument("--dry-run is for files and --stdin")
    if paths and any(p.startswith(BUCKET_SCHEMES) for p in paths):
        if len(paths) > 1 or patterns or exclude_caches or one_file_system:
            raise InvalidArgument(
                "a bucket is backed up on its own: one s3://, gs:// or az:// location, "
                "without --exclude, --exclude-caches or --one-file-system"
            )
        tags = [t for group in tag or [] for t in group.split(",") if t]
        _backup_bucket(s, paths[0], tags, host, time, force, parent)
        return
    request = BackupRequest(
        paths=list(paths or []),
        tags=[t for group in tag or [] for t in group.split(",") if t],
        hostname=host,
        excludes=patterns,
        iexcludes=list(iexclude or []),
        dry_run=dry_run,
        exclude_caches=exclude_caches,
        one_file_system=one_file_system,
        time=time,
        force=force,
        stdin=sys.stdin.buffer if stdin else None,
        stdin_filename=_stdin_name(stdin_filename) if stdin else stdin_filename,
        parent=parent,
        ensure_locked=s.ensure_locked,
    )
    repo = s.open_repository(lock="shared")
    result = _run(repo, request, s)
    _report(result, s, dry_run)
    if result.stats.errors:
        raise typer.Exit(EXIT_INCOMPLETE)


def listed_paths(*files: list[str] | None) -> list[str]:
    """The paths of --files-from, --files-from-verbatim and --files-from-raw, in order."""
    modes: tuple[FilesFromMode, ...] = ("files_from", "verbatim", "raw")
    return [
        p
        for mode, names in zip(modes, files, strict=True)
        for f in names or []
        for p in read_files_from(f, mode)
    ]


def _backup_bucket(
    s: Settings,
    location: str,
    tags: list[str],
    host: str | None,
    time: str | None,
    force: bool,
    parent: str | None,
) -> None:
    """The objects of a live bucket (sources/bucket.py; docs/buckets.md)."""
    from safehold.sources.bucket import BucketBackupResult, backup_bucket
    from safehold.sources.bucket_client import open_bucket

    bucket = open_bucket(location)
    repo = s.open_repository(lock="shared")

    def run(progress: Progress) -> BucketBackupResult:
        return backup_bucket(
            repo,
            bucket,
            tags=tags,
            hostname=host,
            time_text=time,
            parent_ref=parent,
            force=force,
            progress=progress,
            ensure_locked=s.ensure_locked,
        )

    if s.json or s.quiet or not sys.stderr.isatty():
        result = run(ErrorPrinter(s.json))
    else:
        with BarProgress("backup") as bar:
            result = run(bar)
    st = result.stats
    if s.json:
        print_json({"message_type": "summary", **result.summary()})
    elif not s.quiet:
        out().print(
            f"Objects: {st.objects_new} new, {st.objects_changed} changed, "
            f"{st.objects_unmodified} unmodified; downloaded {st.objects_downloaded} "
            f"({human_size(st.bytes_downloaded)}) in {result.duration:.2f}s; added "
            f"{human_size(result.data_added)} to the repository\n"
            f"snapshot {result.snapshot.short_id} of {bucket.location} saved"
        )
        if st.errors:
            out().print(f"{count(len(st.errors), 'object')} could not be read (see errors above)")
    if st.errors:
        raise typer.Exit(EXIT_INCOMPLETE)


def _backup_command(
    s: Settings, command: str, filename: str, tags: list[str], host: str | None, time: str | None
) -> None:
    """A command's stdout as one file; no snapshot unless the command exits 0."""
    from safehold.sources.command import StreamSpec, backup_command, parse_command

    argv = parse_command(command)
    repo = s.open_repository(lock="shared")
    spec = StreamSpec(filename, tags=tags, hostname=host, time=time, ensure_locked=s.ensure_locked)
    _report(backup_command(repo, argv, spec, ErrorPrinter(s.json)), s)


def _stdin_name(name: str) -> str:
    """The path the stream is stored at: at least one name, no "." or ".." in it."""
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\0" in name:
        raise InvalidArgument(f"--stdin-filename {name!r} is not a usable file name")
    return "/".join(parts)


def _run(repo: Repository, request: BackupRequest, s: Settings) -> BackupResult:
    if s.json or s.quiet or not sys.stderr.isatty():
        progress: Progress = ErrorPrinter(s.json)
        return run_backup(repo, request, progress)
    with BarProgress("backup") as bar:
        return run_backup(repo, request, bar)


def _report(result: BackupResult, s: Settings, dry_run: bool = False) -> None:
    summary = result.summary()
    if s.json:
        dry = {"dry_run": True, "snapshot_id": None} if dry_run else {}
        print_json({"message_type": "summary", **summary, **dry})
        return
    if s.quiet:
        return
    st = result.stats
    out().print(
        f"Files: {st.files_new} new, {st.files_changed} changed, "
        f"{st.files_unmodified} unmodified\n"
        f"Dirs:  {st.dirs_new} new, {st.dirs_changed} changed, {st.dirs_unmodified} unmodified\n"
        f"Processed {count(st.total_files_processed, 'file')}, "
        f"{human_size(st.total_bytes_processed)} "
        f"in {result.duration:.2f}s; "
        + (
            f"would add {human_size(result.data_added)} (before compression); dry run: "
            "nothing saved"
            if dry_run
            else f"added {human_size(result.data_added)} to the repository\n"
            f"snapshot {result.snapshot.short_id} saved"
        )
    )
    if st.errors:
        out().print(f"{count(len(st.errors), 'file')} could not be read (see errors above)")
