"""Server settings for the WAL replay of a recovered PostgreSQL cluster, and only for it.

PostgreSQL replays archived WAL in one process, and with the cluster's own settings a
database larger than its ``shared_buffers`` keeps evicting dirty pages while it replays
(a page written during recovery may first move the minimum recovery point in pg_control
forward, a write and an fsync), and every ``max_wal_size`` of WAL or ``checkpoint_timeout``
a restartpoint writes and fsyncs everything dirty: on bench/recover_run.py (2 GB, 3.2 GB
of pgbench WAL, shared_buffers 128MB) the redo took 66 s, 9.4 s of it system time; with
these settings 28 s, 2.4 s. So a recovery starts the server with
these settings on its command line (``pg_ctl -o '-c name=value'``, never written into the
restored configuration): buffers that hold the database (within a quarter of the memory
available), and restartpoints rare. When replay has ended the server is stopped (its
shutdown checkpoint writes what the large buffers held) and started again as it was
configured, so the recovered service runs with the settings it was backed up with.
"""

from __future__ import annotations

__all__ = ["available_memory", "replay_settings"]

MIB = 1 << 20
MIN_BUFFERS = 128 * MIB  # PostgreSQL's default: never replay with less
BUFFERS_PER_BYTE = 1.25  # the database, its indexes' growth, the visibility maps
MEMORY_SHARE = 4  # at most a quarter of the memory available when the plan is made


def available_memory() -> int:
    """MemAvailable of this host, in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def replay_settings(database_bytes: int, memory: int) -> dict[str, str]:
    """The settings a cluster of ``database_bytes`` replays with on a host with ``memory``
    bytes available; empty (replay as configured) when a quarter of that memory cannot
    hold PostgreSQL's default buffers."""
    if memory // MEMORY_SHARE < MIN_BUFFERS:
        return {}
    buffers = min(max(int(database_bytes * BUFFERS_PER_BYTE), MIN_BUFFERS), memory // MEMORY_SHARE)
    return {
        "shared_buffers": f"{buffers // MIB}MB",
        "checkpoint_timeout": "1d",  # the longest PostgreSQL allows
        "max_wal_size": "1TB",  # restored segments are not kept in pg_wal: no disk is held
    }
