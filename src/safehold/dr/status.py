"""Live protection status: each source's recovery point and RPO exposure against its
objective, each replica's lag, per service and overall.

(The data model below is shared by ``safehold status``, the daemon's metrics and its
alerts; ``evaluate`` computes it.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = ["ProtectionStatus", "ReplicaStatus", "ServiceStatus", "SourceStatus"]


@dataclass
class SourceStatus:
    service: str
    source: str
    kind: str
    rpo: timedelta  # the objective that applies to this source (its service's)
    last_backup: datetime | None = None  # time of the newest snapshot of this source
    last_snapshot: str | None = None  # its id
    recovery_point: datetime | None = None  # the newest moment that can be restored
    recovery_point_from: str | None = None  # "snapshot", "archived WAL", "archived binlog"
    exposure: timedelta | None = None  # now - recovery_point; None: never backed up
    within_objective: bool = False
    next_run: datetime | None = None  # the soonest scheduled backup job of the source
    last_job_outcome: str | None = None  # from the daemon's job history, when there is one
    last_job_ended: datetime | None = None
    failing_since: datetime | None = None  # first failed run after the last success
    last_error: str | None = None
    problem: str | None = None  # e.g. "repository unreachable: ..." (recovery point: last known)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class ReplicaStatus:
    repository: str  # the policy's name of the primary
    location: str
    lag: timedelta | None = None  # how far the replica's newest snapshot is behind
    newest_primary: datetime | None = None
    newest_replica: datetime | None = None
    missing_objects: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class ServiceStatus:
    name: str
    rpo: timedelta
    rto: timedelta
    sources: list[SourceStatus] = field(default_factory=list)

    @property
    def within_objectives(self) -> bool:
        return all(source.within_objective for source in self.sources)

    @property
    def exposure(self) -> timedelta | None:
        """The worst exposure of its sources (None when one was never backed up)."""
        exposures = [source.exposure for source in self.sources]
        if any(e is None for e in exposures):
            return None
        return max(e for e in exposures if e is not None)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class ProtectionStatus:
    now: datetime
    services: list[ServiceStatus] = field(default_factory=list)
    replicas: list[ReplicaStatus] = field(default_factory=list)

    @property
    def within_objectives(self) -> bool:
        return all(service.within_objectives for service in self.services)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError
