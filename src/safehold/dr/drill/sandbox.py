"""The sandbox of a drill: a fresh directory (readable by the postgres user, who runs the
restored cluster) and free ports on 127.0.0.1, never anything of the live service.

``refuse_overlap`` compares the plan with the policy before anything is written: every
target under the sandbox, no live path inside it or it inside a live path, no live port.
A marker in the state directory names each running drill's sandbox, so that the next
daemon start stops the servers and removes the directory of a drill that was killed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from safehold.dr.policy import Policy
from safehold.dr.recovery.plan import RecoveryPlan
from safehold.dr.recovery.state import RecoveryState, default_state_path, plan_from_doc
from safehold.dr.recovery.steps import teardown
from safehold.errors import RecoveryRefused

__all__ = ["cleanup_abandoned", "live_ports", "make_sandbox", "refuse_overlap", "release"]

MARKERS = "drills/running"


def make_sandbox(parent: str | None, state_dir: str, service: str) -> str:
    """A new empty directory for one drill, recorded in ``state_dir`` until released."""
    base = parent or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    root = tempfile.mkdtemp(prefix=f"safehold-drill-{service}-", dir=base)
    os.chmod(root, 0o755)  # the restored PostgreSQL runs as postgres and must reach its data
    markers = os.path.join(state_dir, MARKERS)
    os.makedirs(markers, exist_ok=True)
    with open(os.path.join(markers, os.path.basename(root) + ".json"), "w") as f:
        json.dump({"root": root, "pid": os.getpid(), "service": service}, f)
    return root


def release(state_dir: str, root: str) -> None:
    """The drill of ``root`` is over (torn down, or kept on purpose)."""
    marker = os.path.join(state_dir, MARKERS, os.path.basename(root) + ".json")
    if os.path.exists(marker):
        os.unlink(marker)


def cleanup_abandoned(state_dir: str) -> list[str]:
    """Tear down the sandboxes of drills whose process is gone (killed, host rebooted):
    their servers stopped, their directories removed. One sentence per thing done."""
    markers = os.path.join(state_dir, MARKERS)
    done: list[str] = []
    for name in sorted(os.listdir(markers)) if os.path.isdir(markers) else []:
        path = os.path.join(markers, name)
        try:
            with open(path) as f:
                marker = json.load(f)
            root, pid = str(marker["root"]), int(marker["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            os.unlink(path)
            continue
        if _alive(pid):
            continue
        state = RecoveryState(default_state_path("", root))
        if state.load() is not None:
            done += teardown(plan_from_doc(state.doc["plan"]), remove=False)
        if os.path.isdir(root):
            shutil.rmtree(root)
            done.append(f"removed the sandbox {root} of an interrupted drill")
        os.unlink(path)
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_paths(policy: Policy, service: str) -> list[str]:
    """Where the live service keeps its data on this host."""
    paths: list[str] = []
    svc = policy.services[service]
    for source in svc.sources:
        options = source.options
        paths += list(getattr(options, "paths", []) or [])
        for key in ("pgdata", "database"):
            value = getattr(options, key, None)
            if isinstance(value, str):
                paths.append(value)
    for target in svc.recovery.sources.values():
        paths += [p for p in (target.pgdata, target.datadir, target.path, target.dir) if p]
        paths += list(target.paths.values())
    return [os.path.abspath(p) for p in paths]


def live_ports(policy: Policy, service: str) -> set[int]:
    """The ports the live service's servers listen on (as the policy knows them)."""
    svc = policy.services[service]
    ports = {getattr(s.options, "port", None) for s in svc.sources}
    ports |= {t.port for t in svc.recovery.sources.values()}
    if any(s.kind == "postgres" for s in svc.sources):
        ports.add(5432)
    return {p for p in ports if isinstance(p, int)}


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def refuse_overlap(policy: Policy, plan: RecoveryPlan) -> None:
    """Raise unless every target of ``plan`` is in its sandbox, away from the live service."""
    root = plan.target_root
    problems: list[str] = []
    if root is None:
        raise RecoveryRefused("a drill recovers into a sandbox only")
    for live in live_paths(policy, plan.service):
        if _inside(root, live) or _inside(live, root):
            problems.append(f"the sandbox {root} overlaps the live path {live}")
    ports = live_ports(policy, plan.service)
    for sp in plan.sources:
        targets = list(sp.paths.values()) or [sp.target]
        for target in targets:
            if not _inside(os.path.abspath(target), root):
                problems.append(f"target {target} of source {sp.name} is outside the sandbox")
        if sp.port is not None and sp.port in ports:
            problems.append(f"port {sp.port} of source {sp.name} is a live port")
    if problems:
        raise RecoveryRefused("; ".join(problems))
