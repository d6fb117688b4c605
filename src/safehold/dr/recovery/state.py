"""The state file of a recovery in progress: its plan and how far each source got.

Written (atomically) before each source is touched and after each is done, so that a crash
or Ctrl-C leaves a record. Running the same command again finds it: the same moment
resumes the recorded plan (never a newly resolved one: ``--latest`` may have moved on, and
two points in time must never be mixed); another moment is refused until ``--force``
discards the unfinished one, whose partly written targets are then cleared.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from safehold.dr.recovery.plan import Moment, PlannedCheck, RecoveryPlan, SourcePlan

__all__ = ["RecoveryState", "default_state_path", "plan_from_doc"]

RESTORING = "restoring"
RESTORED = "restored"
STARTED = "started"
STATE_NAME = ".safehold-recovery.json"


def default_state_path(service: str, target_root: str | None) -> str:
    """Inside the sandbox, or in the user's state directory for an in-place recovery."""
    if target_root:
        return os.path.join(os.path.abspath(target_root), STATE_NAME)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "safehold", f"recover-{service}.json")


def plan_from_doc(doc: dict[str, Any]) -> RecoveryPlan:
    """A plan as ``RecoveryPlan.to_doc`` wrote it."""
    kind, _, value = str(doc["moment"]).partition(" ")
    return RecoveryPlan(
        service=doc["service"],
        moment=Moment(kind, value or None),
        point=doc["point"],
        repository=doc["repository"],
        location=doc["location"],
        copy_note=doc.get("copy_note"),
        sources=[SourcePlan(**s) for s in doc["sources"]],
        checks=[PlannedCheck(**c) for c in doc["checks"]],
        start=list(doc["start"]),
        newest_data=doc.get("newest_data"),
        target_root=doc.get("target_root"),
        safehold_command=doc.get("safehold_command"),
        timeout=float(doc.get("timeout", 3600.0)),
        primary=bool(doc.get("primary")),
    )


class RecoveryState:
    """One JSON document: the plan, each source's progress, finished or not."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.doc: dict[str, Any] = {}

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path) as f:
                self.doc = json.load(f)
        except FileNotFoundError:
            return None
        return self.doc

    def unfinished(self) -> bool:
        return bool(self.doc) and not self.doc.get("finished")

    def begin(self, plan: RecoveryPlan) -> None:
        self.doc = {
            "plan": {
                **plan.to_doc(),
                "safehold_command": plan.safehold_command,
                "timeout": plan.timeout,
            },
            "sources": {},
            "finished": False,
        }
        self._write()

    def source(self, name: str) -> str | None:
        found = self.doc.get("sources", {}).get(name)
        return str(found) if found is not None else None

    def mark(self, name: str, progress: str) -> None:
        self.doc.setdefault("sources", {})[name] = progress
        self._write()

    def finish(self, outcome: str) -> None:
        self.doc["finished"] = True
        self.doc["outcome"] = outcome
        self._write()

    def _write(self) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".recovery-state.", dir=directory)
        with os.fdopen(fd, "w") as f:
            json.dump(self.doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
