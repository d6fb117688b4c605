"""The newest data each live source had when a drill started, against which the achieved
RPO is measured: PostgreSQL's newest commit (``pg_last_committed_xact``, with
track_commit_timestamp on; else the server's clock, since a running primary may commit at
any moment), the newest modification under a file source's paths or of a SQLite database,
and for any other source the drill's start. Each comes with the basis it was taken on."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime

from safehold.dr.policy_sources import Source

__all__ = ["live_newest"]

DRILL_START = "the drill's start (the live source's newest change is not known)"


def live_newest(source: Source, started: datetime) -> tuple[datetime, str]:
    """(the newest data of the live ``source``, how that was found)."""
    if source.kind == "postgres":
        return _postgres(source, started)
    options = source.options
    if source.kind == "files":
        newest = _newest_mtime(list(getattr(options, "paths", [])))
        if newest is not None:
            return min(newest, started), "the newest modification under the live paths"
    if source.kind == "sqlite":
        database = str(getattr(options, "database", ""))
        newest = _newest_mtime([database, database + "-wal"], walk=False)
        if newest is not None:
            return min(newest, started), "the live database file's modification"
    return started, DRILL_START


def _postgres(source: Source, started: datetime) -> tuple[datetime, str]:
    import psycopg

    from safehold.sources.postgres.physical import conninfo_of

    o = source.options
    conninfo = conninfo_of(
        getattr(o, "dsn", None), getattr(o, "host", None), getattr(o, "port", None),
        getattr(o, "user", None),
    )  # fmt: skip
    try:
        with psycopg.connect(conninfo + " connect_timeout=5", autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('track_commit_timestamp') = 'on', now()"
            ).fetchone()
            assert row is not None
            if row[0]:
                row = conn.execute("SELECT (pg_last_committed_xact()).timestamp, now()").fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return started, f"{DRILL_START}; the live server did not answer: {first}"
    assert row is not None
    if not isinstance(row[0], bool) and row[0] is not None:
        return min(row[0], started), "the live primary's newest commit"
    return min(row[1], started), "the live primary's clock (track_commit_timestamp is off)"


def _newest_mtime(paths: list[str], walk: bool = True) -> datetime | None:
    newest = 0.0
    for path in paths:
        try:
            newest = max(newest, os.lstat(path).st_mtime)
        except OSError:
            continue
        if not walk or not os.path.isdir(path):
            continue
        for directory, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
    return datetime.fromtimestamp(newest, UTC) if newest else None
