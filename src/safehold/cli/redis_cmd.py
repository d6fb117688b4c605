"""``redis``: RDB backups of a running Redis, and restores that bring a server up."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import ErrorPrinter, human_size, out, print_json

__all__ = ["redis_app"]

redis_app = typer.Typer(help="Redis: RDB snapshots (as a replica receives them), restores.")
app.add_typer(redis_app, name="redis")


@redis_app.command("backup")
def backup(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", "-H", help="Server host.")] = None,
    port: Annotated[int | None, typer.Option("--port", "-P", help="Server port.")] = None,
    socket: Annotated[str | None, typer.Option("--socket", "-s", help="Server socket.")] = None,
    auth_file: Annotated[
        str | None, typer.Option("--auth-file", help="File holding the Redis password.")
    ] = None,
    as_path: Annotated[
        str, typer.Option("--as", help="Path inside the snapshot.")
    ] = "redis/dump.rdb",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag.")] = None,
) -> None:
    """Store the server's RDB (redis-cli --rdb -), streamed, no file on this disk."""
    from safehold.sources.command import StreamSpec
    from safehold.sources.redis import RedisConn, backup_redis

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    conn = RedisConn(host=host, port=port, socket=socket, password_file=auth_file)
    spec = StreamSpec(as_path, tags=list(tag or []), ensure_locked=s.ensure_locked)
    result = backup_redis(repo, conn, spec, ErrorPrinter(s.json))
    if s.json:
        print_json(
            {"message_type": "summary", **result.summary(), "source": result.snapshot.source}
        )
    elif not s.quiet:
        out().print(
            f"Redis RDB ({human_size(result.stats.total_bytes_processed)}, keyspace "
            f"{result.snapshot.source.get('keyspace')}) saved as snapshot "
            f"{result.snapshot.short_id}; added {human_size(result.data_added)}"
        )


@redis_app.command("restore")
def restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="A Redis snapshot, or 'latest'.")],
    to_dir: Annotated[str, typer.Option("--to-dir", help="Directory for dump.rdb.")],
    start: Annotated[
        bool, typer.Option("--start", help="Start redis-server on it and wait for the load.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Port of the started server.")] = 6379,
    bind: Annotated[str, typer.Option("--bind", help="Address of the started server.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Write the RDB to --to-dir/dump.rdb; with --start, bring a Redis server up on it."""
    from safehold.sources.redis import restore_redis

    s = settings(ctx)
    repo = s.open_repository(lock="shared")
    result = restore_redis(repo, snapshot, to_dir, start, port, bind)
    doc = {
        "message_type": "summary",
        "snapshot_id": result.snapshot.id,
        "path": result.path,
        "bytes_written": result.bytes_written,
        "started": result.started,
        "port": result.port,
        "keyspace": result.keys,
        "total_duration": round(result.seconds, 3),
    }
    if s.json:
        print_json(doc)
    elif not s.quiet:
        out().print(
            f"restored Redis snapshot {result.snapshot.short_id} to {result.path} "
            f"({human_size(result.bytes_written)})"
            + (f"; redis-server running on {bind}:{port}, keyspace {result.keys}" if start else "")
        )
