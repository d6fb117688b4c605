"""The read-only JSON API, /api/v1, and its two actions: a backup or a drill now.

Each document is the CLI's ``--json`` document for the same question (status, jobs,
snapshots, ls, drills, standbys), built by the same code. Sections that later issues add
get routes of their own here and a key of their own in the documents they extend, so
nothing existing changes shape (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from safehold.repo.snapshot import snapshot_doc
from safehold.service.http.app import HttpProblem, require
from safehold.service.http.documents import (
    directory_doc,
    drill_report,
    drills_doc,
    exposure,
    exposure_doc,
    file_doc,
    jobs_doc,
    service_snapshots,
    standbys_doc,
)
from safehold.service.http.state import Dashboard, Missing, backup_jobs, drill_job

__all__ = ["ACTIONS", "request_action", "router"]

router = APIRouter(tags=["safehold"])

OptionalName = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
SnapshotPath = Annotated[str, Query(max_length=4096, pattern=r"^/")]
Hours = Annotated[
    int | None, Query(ge=1, le=24 * 90, description="The window in hours (default: up to 24).")
]


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _status(dashboard: Dashboard) -> dict[str, Any]:
    doc = dashboard.status_doc()
    if doc is None:
        raise HttpProblem(503, "the protection status is being computed: try again shortly")
    return doc


@router.get("/status", summary="The protection status: `safehold status --json`.")
def status(request: Request) -> JSONResponse:
    require(request, "viewer")
    return JSONResponse(_status(_dashboard(request)))


@router.get("/services/{service}", summary="One service of the status document.")
def service(request: Request, service: str) -> JSONResponse:
    require(request, "viewer")
    dashboard = _dashboard(request)
    dashboard.check_service(service)
    found = next(s for s in _status(dashboard)["services"] if s["name"] == service)
    return JSONResponse(found)


@router.get(
    "/services/{service}/exposure",
    summary="The service's RPO exposure over time (one point per successful backup, then now).",
)
def service_exposure(request: Request, service: str, hours: Hours = None) -> JSONResponse:
    require(request, "viewer")
    return JSONResponse(exposure_doc(exposure(_dashboard(request), service, hours), service))


@router.get("/replicas", summary="The replicas and their lag (the status document's replicas).")
def replicas(request: Request) -> JSONResponse:
    require(request, "viewer")
    doc = _status(_dashboard(request))
    return JSONResponse({"message_type": "replicas", "replicas": doc["replicas"]})


@router.get("/jobs", summary="The job history, newest first: `safehold jobs --json`.")
def jobs(
    request: Request,
    job: Annotated[str | None, Query(max_length=500)] = None,
    outcome: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 30,
) -> JSONResponse:
    require(request, "viewer")
    return JSONResponse(jobs_doc(_dashboard(request), job, outcome, limit))


@router.get(
    "/services/{service}/snapshots",
    summary="The service's snapshots, oldest first: `snapshots --json --tag source=S/X`.",
)
def snapshots(request: Request, service: str, source: OptionalName = None) -> JSONResponse:
    require(request, "viewer")
    found = service_snapshots(_dashboard(request), service, source)
    return JSONResponse([snapshot_doc(s) for s in found])


@router.get(
    "/services/{service}/snapshots/{snapshot}/tree",
    summary="The entries right under a directory of a snapshot (as `ls --json`).",
)
def tree(request: Request, service: str, snapshot: str, path: SnapshotPath = "/") -> JSONResponse:
    require(request, "viewer")
    return JSONResponse(directory_doc(_dashboard(request), service, snapshot, path))


@router.get(
    "/services/{service}/snapshots/{snapshot}/file",
    summary="A file of a snapshot: its entry, content blob ids and SHA-256 (no content).",
)
def file(request: Request, service: str, snapshot: str, path: SnapshotPath) -> JSONResponse:
    require(request, "viewer")
    return JSONResponse(file_doc(_dashboard(request), service, snapshot, path))


@router.get("/drills", summary="The stored drills, oldest first: `safehold drills --json`.")
def drills(request: Request, service: OptionalName = None) -> JSONResponse:
    require(request, "viewer")
    return JSONResponse(drills_doc(_dashboard(request), service))


@router.get("/drills/{report}", summary="One stored drill: `safehold drills show ID --json`.")
def drill(request: Request, report: str) -> JSONResponse:
    require(request, "viewer")
    dashboard = _dashboard(request)
    found, _history = drill_report(dashboard, report)
    return JSONResponse(dashboard.redactor.doc(found.to_doc()))


def _standbys(request: Request, service: str | None) -> list[dict[str, Any]]:
    require(request, "viewer")
    docs = standbys_doc(_dashboard(request), service)
    if docs is None:
        raise HttpProblem(503, "the protection status is being computed: try again shortly")
    return docs


@router.get(
    "/standbys",
    summary="Each hot standby as the last status read it: `safehold standby status S --json`.",
)
def standbys(request: Request, service: OptionalName = None) -> JSONResponse:
    return JSONResponse(_standbys(request, service))


@router.get("/standbys/{service}", summary="One hot standby: `standby status SERVICE --json`.")
def standby(request: Request, service: str) -> JSONResponse:
    found = _standbys(request, service)
    if not found:
        raise Missing(f"service {service} has no [services.{service}.standby] table")
    return JSONResponse(found[0])


ACTIONS = {"backup": "back up now", "drill": "run drill now"}


def request_action(dashboard: Dashboard, service: str, action: str) -> list[str]:
    """Queue the service's backups, or its drill, in the daemon; the jobs queued."""
    dashboard.check_service(service)
    if dashboard.request_jobs is None:
        raise HttpProblem(
            409, f"{ACTIONS[action]} needs the daemon: `safehold serve` alone only reads"
        )
    jobs = backup_jobs(dashboard.policy, service) if action == "backup" else [drill_job(service)]
    dashboard.request_jobs(jobs)
    return [str(job) for job in jobs]


def _act(request: Request, service: str, action: str) -> JSONResponse:
    who = require(request, "operator")
    if not request.app.state.auth.csrf_ok(who, request.headers.get("x-csrf-token")):
        raise HttpProblem(403, "missing or wrong CSRF token")
    jobs = request_action(_dashboard(request), service, action)
    return JSONResponse(
        {"message_type": f"{action}_requested", "service": service, "jobs": jobs},
        status_code=202,
    )


@router.post(
    "/services/{service}/backup",
    status_code=202,
    summary="Back up the service now (operator; a browser session also needs X-CSRF-Token).",
)
def backup_now(request: Request, service: str) -> JSONResponse:
    return _act(request, service, "backup")


@router.post(
    "/services/{service}/drill",
    status_code=202,
    summary="Drill the service now, as the daemon's scheduled drill (operator; X-CSRF-Token"
    " from a browser session).",
)
def drill_now(request: Request, service: str) -> JSONResponse:
    return _act(request, service, "drill")
