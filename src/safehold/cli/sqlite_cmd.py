"""``sqlite``: consistent backups of live SQLite databases, and checked restores."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import ErrorPrinter, human_size, out, print_json

__all__ = ["sqlite_app"]

sqlite_app = typer.Typer(help="SQLite: online backup API copies, integrity-checked restores.")
app.add_typer(sqlite_app, name="sqlite")


@sqlite_app.command("backup")
def backup(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="The database file (may be in use).")],
    as_path: Annotated[
        str | None,
        typer.Option("--as", help="Path inside the snapshot (default: sqlite/ and the file name)."),
    ] = None,
    tmpdir: Annotated[
        str | None,
        typer.Option("--tmpdir", help="Where the copy is staged (default: beside the database)."),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Hostname to record.")] = None,
) -> None:
    """Copy DATABASE with SQLite's online backup API (one moment in time) and store it."""
    from safehold.sources.command import StreamSpec
    from safehold.sources.sqlite import backup_sqlite, default_name

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    spec = StreamSpec(
        as_path or default_name(database),
        tags=list(tag or []),
        hostname=host,
        ensure_locked=s.ensure_locked,
    )
    result = backup_sqlite(repo, database, spec, tmpdir, ErrorPrinter(s.json))
    src = result.snapshot.source
    if s.json:
        print_json({"message_type": "summary", **result.summary(), "source": src})
    elif not s.quiet:
        out().print(
            f"SQLite {src['database']} copied at {src['copied_at']} "
            f"({src['page_count']} pages, {human_size(result.stats.total_bytes_processed)}, "
            f"{src['copy_seconds']}s); added {human_size(result.data_added)}; "
            f"snapshot {result.snapshot.short_id} saved"
        )


@sqlite_app.command("restore")
def restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="A SQLite snapshot, or 'latest'.")],
    to: Annotated[str, typer.Option("--to", help="Where to write the database.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a SQLite snapshot to --to after PRAGMA integrity_check passes on it."""
    from safehold.sources.sqlite import restore_sqlite

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    result = restore_sqlite(repo, snapshot, to, overwrite=force)
    if s.json:
        print_json(
            {
                "message_type": "summary",
                "snapshot_id": result.snapshot.id,
                "path": result.path,
                "bytes_written": result.bytes_written,
                "integrity_check": result.integrity,
                "copied_at": result.snapshot.source.get("copied_at"),
                "total_duration": round(result.seconds, 3),
            }
        )
    elif not s.quiet:
        out().print(
            f"restored SQLite snapshot {result.snapshot.short_id} (copied at "
            f"{result.snapshot.source.get('copied_at')}) to {result.path}: "
            f"{human_size(result.bytes_written)}, integrity_check {result.integrity}"
        )
