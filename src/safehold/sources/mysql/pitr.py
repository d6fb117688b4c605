"""Point-in-time recovery: a restored physical backup rolled forward with archived binlogs.

``mariadb-binlog --start-position=<backup's position> --stop-datetime=<T>`` decodes the
archived logs from the backup's consistent point up to (not including) the first event at
or after T, and the client applies them to a scratch server on the restored data
directory. Binlog times have whole seconds: T is rounded down, so a transaction in the
same second as T is not applied (never one after T). The time reached is the newest
transaction applied, read from the binlog event headers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime
from typing import Any, BinaryIO

from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot
from safehold.sources import external
from safehold.sources.command import pipe_into
from safehold.sources.mysql.binlog import (
    BinlogMissing,
    binlog_number,
    commit_times,
    fetch_binlog,
    list_binlogs,
)
from safehold.sources.mysql.client import MysqlError, program
from safehold.sources.mysql.physical import format_utc, scratch_server, utc_seconds

__all__ = ["binlogs_after", "replay_to"]

COPY = 1 << 20


def binlogs_after(repo: Repository, instance: str, first: str) -> tuple[list[str], str | None]:
    """Archived binlogs from ``first`` on, up to the first gap; and the first missing name."""
    names = [
        n for n in list_binlogs(repo.store, instance) if binlog_number(n) >= binlog_number(first)
    ]
    if not names or names[0] != first:
        return [], first
    run = [names[0]]
    for name in names[1:]:
        if binlog_number(name) != binlog_number(run[-1]) + 1:
            stem = run[-1].rsplit(".", 1)[0]
            width = len(run[-1].rsplit(".", 1)[1])
            return run, f"{stem}.{binlog_number(run[-1]) + 1:0{width}d}"
        run.append(name)
    return run, None


def replay_to(
    repo: Repository,
    backup: Snapshot,
    datadir: str,
    to_time: datetime,
    owner: str | None,
    stop_at: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Roll the restored ``datadir`` forward to ``to_time``, or with ``stop_at`` (binlog
    file, position: a recorded cut) to exactly that position; what was reached."""
    instance = backup.source["instance"]
    first, position = backup.source.get("binlog_file"), backup.source.get("binlog_pos")
    if not first or position is None:
        raise MysqlError(
            f"backup {backup.short_id} recorded no binlog position (was log_bin on?): "
            "it cannot be rolled forward"
        )
    names, gap = binlogs_after(repo, instance, first)
    if not names:
        raise BinlogMissing(f"binlog/{instance}/{first}")
    stop_file, stop_pos = stop_at or (None, None)
    if stop_file is not None and stop_file not in names:
        raise BinlogMissing(f"binlog/{instance}/{stop_file}")
    stop = datetime.fromisoformat(utc_seconds(to_time) + "+00:00")
    work = tempfile.mkdtemp(prefix="safehold-binlogs-")
    reached: datetime | None = None
    beyond = False  # an event at or after the target exists: nothing before it is missing
    try:
        paths = []
        for i, name in enumerate(names):
            data = fetch_binlog(repo, instance, name)
            end = stop_pos if name == stop_file else None
            for pos, moment in commit_times(data, position if i == 0 else 4):
                if (end is not None and pos > end) or (stop_file is None and moment >= stop):
                    beyond = True
                    break
                reached = moment
            path = os.path.join(work, name)
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
            beyond = beyond or name == stop_file
            if beyond:
                break
        until = (
            f"--stop-position={stop_pos}"  # applies to the last file named: the cut's
            if stop_file is not None
            else f"--stop-datetime={utc_seconds(to_time)}"
        )
        decode = [program("binlog"), "--no-defaults", f"--start-position={position}", until, *paths]
        with scratch_server(datadir, owner) as conn:
            client = [program("client"), "--no-defaults", *conn.args()]
            env = {**os.environ, "TZ": "UTC"}
            with external.stream(decode, env=env) as events:

                def produce(sink: BinaryIO) -> int:
                    sink.write(b"FLUSH PRIVILEGES;\n")
                    total = 0
                    while chunk := events.read(COPY):
                        sink.write(chunk)
                        total += len(chunk)
                    return total

                applied = pipe_into(client, produce)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "target_time": format_utc(to_time),
        "stop_datetime": utc_seconds(to_time),
        "stop_position": f"{stop_file}:{stop_pos}" if stop_file else None,
        "reached_time": format_utc(reached) if reached else None,
        "binlogs": names if not beyond else [os.path.basename(p) for p in paths],
        "start": f"{first}:{position}",
        "decoded_bytes": applied,
        "complete": beyond,
        "missing_binlog": gap,
    }
