"""From a request to a recovery ready to run: open a readable copy of the repository,
resume or refuse an unfinished run, build the plan. ``recover`` and drills both start here."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safehold.dr.jobs import require_service
from safehold.dr.policy import Policy
from safehold.dr.recovery import sources as kinds
from safehold.dr.recovery.plan import Moment, RecoveryPlan, build_plan, open_readable_copy
from safehold.dr.recovery.report import Observer, utcnow
from safehold.dr.recovery.state import RecoveryState, default_state_path, plan_from_doc
from safehold.dr.recovery.steps import Recovery, teardown
from safehold.errors import RecoveryRefused
from safehold.repo.repository import Repository

__all__ = ["RecoveryRequest", "prepare"]


@dataclass
class RecoveryRequest:
    service: str
    moment: Moment
    target_root: str | None = None
    force: bool = False
    primary: bool = False  # the recovered databases become the new primary
    safehold_command: str | None = None  # how the postgres user runs safehold
    state_path: str | None = None
    tune_replay: bool = True  # PostgreSQL replays with settings of its own (replay.py)


def _opener() -> Callable[[Any], Repository]:
    from safehold.dr.status import open_policy_repository

    return open_policy_repository


def prepare(
    policy: Policy,
    request: RecoveryRequest,
    observer: Observer | None = None,
    opener: Callable[[Any], Repository] | None = None,
) -> Recovery:
    """The recovery to run: the unfinished one of the state file when it is the same
    request, else a new plan (an unfinished different one is refused, or with ``force``
    discarded: its servers stopped and its partly written targets cleared)."""
    require_service(policy, request.service)
    open_copy = opener or _opener()
    began = utcnow().isoformat()
    root = os.path.abspath(request.target_root) if request.target_root else None
    state = RecoveryState(request.state_path or default_state_path(request.service, root))
    state.load()
    if state.unfinished():
        old = plan_from_doc(state.doc["plan"])
        if old.moment == request.moment and old.target_root == root:
            recovery = _resume(policy, request, old, state, observer, open_copy)
            recovery.planned(
                began, f"resuming the recovery to {old.point} recorded in {state.path}"
            )
            return recovery
        if not request.force:
            raise RecoveryRefused(
                f"an unfinished recovery of {old.service} to {old.moment.text()} is recorded in"
                f" {state.path}: run that command again to resume it, or add --force to discard it"
            )
        _discard(old, state)
    repo, location, note = open_readable_copy(policy, request.service, open_copy)
    cut = None
    if request.moment.kind == "cut":
        from safehold.dr.cuts import find_cut

        cut = find_cut(repo, request.service, str(request.moment.value))
    plan = build_plan(
        policy,
        request.service,
        request.moment,
        repo,
        location,
        note,
        root,
        request.primary,
        cut,
        request.tune_replay,
    )
    if request.safehold_command:
        plan.safehold_command = request.safehold_command
    recovery = _recovery(policy, plan, repo, state, observer, request.force, False)
    copy = f" ({note})" if note else ""
    recovery.planned(began, f"{len(plan.sources)} sources to {plan.point} from {location}{copy}")
    return recovery


def _resume(
    policy: Policy,
    request: RecoveryRequest,
    plan: RecoveryPlan,
    state: RecoveryState,
    observer: Observer | None,
    open_copy: Callable[[Any], Repository],
) -> Recovery:
    configured = policy.repositories[plan.repository]
    repo = open_copy(configured.model_copy(update={"location": plan.location}))
    repo.load_index()
    return _recovery(policy, plan, repo, state, observer, request.force, True)


def _discard(old: RecoveryPlan, state: RecoveryState) -> None:
    """Stop what the unfinished run started and clear what it wrote (only its own targets:
    preflight had found them empty)."""
    teardown(old, remove=False)
    for sp in old.sources:
        if state.source(sp.name) is not None:
            kinds.clear_target(sp)
    os.unlink(state.path)
    state.doc = {}


def _recovery(
    policy: Policy,
    plan: RecoveryPlan,
    repo: Repository,
    state: RecoveryState,
    observer: Observer | None,
    force: bool,
    resumed: bool,
) -> Recovery:
    safehold = plan.safehold_command or _default_safehold_command()
    commands = kinds.PgCommands()
    if any(sp.kind == "postgres" for sp in plan.sources):
        configured = policy.repositories[plan.repository]
        commands = kinds.pg_commands(configured, plan.location, safehold, plan.primary)
    recovery = Recovery(plan, repo, commands, state, force=force, resumed=resumed)
    if observer is not None:
        recovery.observer = observer
    return recovery


def _default_safehold_command() -> str:
    found = shutil.which("safehold")
    return found or f"{shlex.quote(sys.executable)} -m safehold"
