"""``replicate --logs-only``: bring a replica the primary's archived logs between full runs.

A database's recovery point moves with every WAL segment or binlog archived, many times an
hour, while a full replication (every prefix of both stores listed) runs after backups or on
a cron schedule. A ``LogFollower`` copies only ``wal/`` and ``binlog/``: each ``poll`` lists
the primary's log prefixes and copies, verified as ``replicate`` does (authenticated with
the master key, read back from the replica), the logs the replica lacks. It remembers what
the replica has, so a poll costs one listing of the primary's logs and nothing else when
no log is new: cheap enough to run every few seconds.

The first poll checks the replica once as ``replicate`` does (the same repository, or an
empty place), and writes ``keys/`` and ``config`` to a new replica first, so that logs
never land in a place that is not a repository.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from safehold.errors import InvalidArgument
from safehold.ops.replicate import (
    LOG_GROUPS,
    CopyError,
    CopyFailed,
    check_target,
    copy_object,
    group_of,
    listed,
    log_authenticator,
    take_inventory,
)
from safehold.repo.repository import Repository
from safehold.storage.base import ObjectStore

__all__ = ["LOG_PREFIXES", "LogCopyResult", "LogFollower"]

LOG_PREFIXES = tuple(f"{group}/" for group in LOG_GROUPS)
_SETUP_GROUPS = ("keys", "config")  # what a new replica needs before any log


@dataclass
class LogCopyResult:
    """One poll: what was copied, what failed (each object once, with why)."""

    copied: int = 0
    copied_bytes: int = 0
    errors: list[CopyError] = field(default_factory=list)
    seconds: float = 0.0
    copied_by_group: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_doc(self) -> dict[str, object]:
        return {
            "objects_copied": self.copied,
            "bytes_copied": self.copied_bytes,
            "copied": dict(self.copied_by_group),
            "errors": [e.to_doc() for e in self.errors],
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


class LogFollower:
    """Copies new archived logs of ``repo`` to ``target``; call ``poll`` as often as wanted."""

    def __init__(self, repo: Repository, target: ObjectStore, connections: int = 4) -> None:
        if connections < 1:
            raise InvalidArgument("--connections must be at least 1")
        if repo.store.location == target.location:
            raise InvalidArgument(f"the replica {target.location} is the repository itself")
        self.repo = repo
        self.target = target
        self.connections = connections
        self._on_replica: set[str] | None = None  # log objects known to be on the replica
        self._authenticate = log_authenticator(repo)

    def poll(self) -> LogCopyResult:
        """Copy every archived log the replica lacks; the first poll also sets it up."""
        started = time.monotonic()
        result = LogCopyResult()
        source = self.repo.store
        if self._on_replica is None:
            self._on_replica = self._set_up(result)
            if not result.ok:
                result.seconds = time.monotonic() - started
                self._on_replica = None  # check and set up again next time
                return result
        primary: dict[str, int] = {}
        for prefix in LOG_PREFIXES:
            primary.update(listed(source, prefix))
        todo = {k: n for k, n in sorted(primary.items()) if k not in self._on_replica}
        self._copy(todo, result)
        result.seconds = time.monotonic() - started
        return result

    def _set_up(self, result: LogCopyResult) -> set[str]:
        """Check the replica (refuse another repository), create it with its keys and
        config when new; the log objects it already holds."""
        inventory = take_inventory(self.repo.store, self.target)
        check_target(self.repo.store, self.target, inventory)
        if not inventory.target_exists:
            self.target.create()
        missing = inventory.missing()
        for group in _SETUP_GROUPS:  # keys before config, as replicate orders them
            self._copy({k: n for k, n in missing.items() if group_of(k) == group}, result)
        return {k for k in inventory.target if group_of(k) in LOG_GROUPS}

    def _copy(self, todo: dict[str, int], result: LogCopyResult) -> None:
        if not todo:
            return
        source = self.repo.store

        def one(key: str) -> bool:
            return copy_object(source, self.target, key, todo[key], self._authenticate)

        with ThreadPoolExecutor(min(self.connections, len(todo))) as pool:
            futures = {key: pool.submit(one, key) for key in todo}
        for key, future in futures.items():
            try:
                written = future.result()
            except CopyFailed as exc:
                result.errors.append(CopyError(key, exc.message, exc.corrupt))
                continue
            if self._on_replica is not None:
                self._on_replica.add(key)
            if written:
                group = group_of(key)
                result.copied += 1
                result.copied_bytes += todo[key]
                result.copied_by_group[group] = result.copied_by_group.get(group, 0) + 1
