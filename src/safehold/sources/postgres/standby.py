"""A streaming standby built from the repository instead of from the primary.

The newest base backup of production's lineage is restored (``recovery.restore_base``)
with standby.signal, ``primary_conninfo`` and ``restore_command`` = ``safehold pg
wal-fetch``: the standby replays the archived WAL first, then streams from the primary,
and whenever it falls behind it catches up from the archive again. The primary only
serves the WAL written since the backup, not a copy of every file. It follows the
primary's timeline changes (``recovery_target_timeline = latest``) and archives nothing
while it is a standby.

Under Patroni (a ``create_replica_methods`` entry) the same restore runs; Patroni then
writes its own primary_conninfo and restore_command when it starts the replica.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from safehold.archive.progress import Progress
from safehold.repo.repository import Repository
from safehold.sources.postgres.catalog import RecoveryTarget
from safehold.sources.postgres.recovery import RecoveryOptions, RecoveryResult, restore_base
from safehold.sources.postgres.recovery_plan import plan_recovery

__all__ = ["StandbyRequest", "create_standby", "primary_system_id"]


@dataclass
class StandbyRequest:
    """``primary_conninfo`` may be empty (Patroni configures it itself)."""

    pgdata: str
    primary_conninfo: str
    restore_command: str
    system_id: str | None = None
    port: int | None = None


def primary_system_id(conninfo: str) -> str | None:
    """The primary's system identifier, so that the backup restored is of that cluster;
    None when the primary cannot be asked (the repository's only cluster is used)."""
    if not conninfo:
        return None
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def create_standby(
    repo: Repository, request: StandbyRequest, progress: Progress | None = None
) -> RecoveryResult:
    system_id = request.system_id or primary_system_id(request.primary_conninfo)
    plan = plan_recovery(repo, RecoveryTarget(), system_id=system_id)
    settings = {"primary_conninfo": request.primary_conninfo} if request.primary_conninfo else {}
    options = RecoveryOptions(
        target_dir=request.pgdata,
        target=RecoveryTarget(),
        restore_command=request.restore_command,
        timeline="latest",  # follow the primary onto each new timeline
        port=request.port,
        settings=settings,
        standby=True,
    )
    return restore_base(repo, plan.snapshot, options, progress)
