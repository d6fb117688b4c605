"""The HTML pages: overview, service, jobs, snapshot browser, login; and the "back up now"
form. Each page renders the same documents as the API (service/http/documents.py).

Forms post back here with the session's CSRF token; a POST without it, or from someone
who is not an operator, changes nothing.
"""

from __future__ import annotations

import logging
import tempfile
import urllib.parse
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from safehold.archive.browse import dump_file, find_node
from safehold.dr.drill.report import CHART_DRILLS, DrillReport, render_html
from safehold.dr.drill.report import chart as drill_chart
from safehold.errors import SafeholdError
from safehold.service.history import OUTCOMES
from safehold.service.http.api import ACTIONS, request_action
from safehold.service.http.app import HttpProblem, page, require
from safehold.service.http.auth import SESSION_COOKIE, Authenticator
from safehold.service.http.documents import (
    directory_doc,
    drill_report,
    drills,
    exposure,
    file_doc,
    find_service_snapshot,
    jobs_doc,
    service_snapshots,
)
from safehold.service.http.state import Dashboard

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

log = logging.getLogger("safehold.http")

STATIC = Path(__file__).parent / "static"
MAX_FORM = 8192  # bytes of a posted form
FAILED = ("failed", "interrupted")
DRILLS_SHOWN = 20
DRILL_CHARTS = (("rto_seconds", "rto", "RTO"), ("rpo_seconds", "rpo", "RPO"))

SnapshotPath = Annotated[str, Query(max_length=4096, pattern=r"^/")]
Hours = Annotated[int | None, Query(ge=1, le=24 * 90)]


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (a few fields; larger bodies are refused)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise HttpProblem(400, "form too large")
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    who = require(request, "viewer")
    dashboard = _dashboard(request)
    last_drill: dict[str, DrillReport] = {}
    try:
        for report in drills(dashboard, None):
            last_drill[report.service] = report  # oldest first: the last one wins
    except SafeholdError as exc:  # the cards still show; the status says what is wrong
        log.warning("drills unreadable for the overview: %s", exc)
    return page(request, "overview.html", who, status=dashboard.status_doc(), last_drill=last_drill)


@router.get("/drills/{report}", response_class=HTMLResponse)
def drill_page(request: Request, report: str) -> Response:
    who = require(request, "viewer")
    dashboard = _dashboard(request)
    found, _history = drill_report(dashboard, report)
    return page(request, "drill.html", who, drill=dashboard.redactor.doc(found.to_doc()))


@router.get("/drills/{report}/report", response_class=HTMLResponse)
def drill_report_html(request: Request, report: str) -> Response:
    """The drill's standalone HTML report (as ``drills show --html``): it carries its own
    inline style, so this answer alone allows inline styles (and nothing else)."""
    require(request, "viewer")
    dashboard = _dashboard(request)
    found, history = drill_report(dashboard, report)
    return HTMLResponse(
        dashboard.redactor.text(render_html(found, history)),
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
            " img-src 'self' data:; frame-ancestors 'none'"
        },
    )


@router.get("/services/{service}", response_class=HTMLResponse)
def service_page(request: Request, service: str, hours: Hours = None) -> Response:
    who = require(request, "viewer")
    dashboard = _dashboard(request)
    doc = dashboard.service_doc(service)
    status = dashboard.status_doc()
    service_drills = drills(dashboard, service)
    replicas = [
        r
        for r in (status or {}).get("replicas", [])
        if r["repository"] == dashboard.policy.repository_of(service)
    ]
    return page(
        request,
        "service.html",
        who,
        service=doc,
        name=service,
        chart=exposure(dashboard, service, hours),
        replicas=replicas,
        can_act=dashboard.request_jobs is not None,
        drills=list(reversed(service_drills))[:DRILLS_SHOWN],
        drill_charts=[
            Markup(drill_chart(service_drills[-CHART_DRILLS:], measure, objective, title))
            for measure, objective, title in DRILL_CHARTS
        ],
        queued=request.query_params.get("queued"),
    )


@router.post("/services/{service}/{action}")
async def action_form(request: Request, service: str, action: str) -> Response:
    """The "Back up now" and "Run drill now" forms."""
    who = require(request, "operator")
    if action not in ACTIONS:
        raise HttpProblem(404, "not found")
    form = await _form(request)
    auth: Authenticator = request.app.state.auth
    if not auth.csrf_ok(who, form.get("csrf")):
        raise HttpProblem(403, "missing or wrong CSRF token: reload the page and try again")
    jobs = request_action(_dashboard(request), service, action)
    query = urllib.parse.urlencode({"queued": ", ".join(jobs)})
    return RedirectResponse(f"/services/{service}?{query}", status_code=303)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    job: Annotated[str | None, Query(max_length=500)] = None,
    outcome: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    """Failures first (the newest failed and interrupted runs), then every run."""
    who = require(request, "viewer")
    dashboard = _dashboard(request)
    runs = failures = None
    if dashboard.history() is not None:
        runs = jobs_doc(dashboard, job or None, outcome or None, limit)["runs"]
        failures = [
            run
            for wanted in FAILED
            if outcome in (None, "", wanted)
            for run in jobs_doc(dashboard, job or None, wanted, limit)["runs"]
        ]
        failures.sort(key=lambda run: run["id"], reverse=True)
    return page(
        request,
        "jobs.html",
        who,
        runs=runs,
        failures=failures,
        job=job or "",
        outcome=outcome or "",
        limit=limit,
        outcomes=OUTCOMES,
    )


@router.get("/services/{service}/snapshots", response_class=HTMLResponse)
def snapshots_page(request: Request, service: str) -> Response:
    who = require(request, "viewer")
    dashboard = _dashboard(request)
    found = service_snapshots(dashboard, service, None)
    return page(request, "snapshots.html", who, name=service, snapshots=list(reversed(found)))


@router.get("/services/{service}/snapshots/{snapshot}", response_class=HTMLResponse)
def tree_page(request: Request, service: str, snapshot: str, path: SnapshotPath = "/") -> Response:
    who = require(request, "viewer")
    doc = directory_doc(_dashboard(request), service, snapshot, path)
    parts = [p for p in doc["path"].split("/") if p]
    crumbs = [("/" + "/".join(parts[: i + 1]), part) for i, part in enumerate(parts)]
    return page(request, "tree.html", who, name=service, doc=doc, crumbs=crumbs)


@router.get("/services/{service}/snapshots/{snapshot}/file", response_class=HTMLResponse)
def file_page(request: Request, service: str, snapshot: str, path: SnapshotPath) -> Response:
    who = require(request, "viewer")
    dashboard = _dashboard(request)
    doc = file_doc(dashboard, service, snapshot, path)
    allowed = dashboard.policy.daemon.http_allow_download
    return page(request, "file.html", who, name=service, doc=doc, allow_download=allowed)


@router.get("/services/{service}/snapshots/{snapshot}/download")
def download(request: Request, service: str, snapshot: str, path: SnapshotPath) -> Response:
    """A file's content, only with ``[daemon] http_allow_download = true``."""
    require(request, "viewer")
    dashboard = _dashboard(request)
    if not dashboard.policy.daemon.http_allow_download:
        raise HttpProblem(403, "downloads are off: [daemon] http_allow_download = true allows them")
    snap = find_service_snapshot(dashboard, service, snapshot)
    repo = dashboard.browsable(dashboard.policy.repository_of(service), snap)
    node = find_node(repo, snap, path)
    if node is None or node.type != "file":
        raise HttpProblem(400, f"{path} is not a regular file in snapshot {snap.short_id}")
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    try:
        dump_file(repo, node, spool)  # type: ignore[arg-type]
    except SafeholdError:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> object:
        with spool:
            while block := spool.read(1024 * 1024):
                yield block

    name = urllib.parse.quote(path.rsplit("/", 1)[-1])
    return StreamingResponse(
        chunks(),  # type: ignore[arg-type]
        media_type="application/octet-stream",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"},
    )


@router.get("/favicon.ico")
def favicon() -> Response:
    """For pages without an icon link (the standalone drill report): no 404 to log."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


# -- logging in and out -----------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host``, ``/\\host`` or a URL) may follow a login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"  # "/\\host" is "//host" to a browser
    return target


def _login_page(request: Request, target: str, error: str | None, status: int) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    auth: Authenticator = request.app.state.auth
    return templates.TemplateResponse(
        request,
        "login.html",
        {
            "next": target,
            "error": error,
            "who": None,
            "tokens": bool(auth.tokens),
            "passwords": any(auth.passwords.values()),
        },
        status_code=status,
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str, Query(max_length=2048)] = "/") -> Response:
    return _login_page(request, _safe_next(next), None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    auth: Authenticator = request.app.state.auth
    role = None
    if form.get("token"):
        role = auth.token_role(form["token"].strip())
    elif form.get("user"):
        role = auth.password_role(form["user"], form.get("password", ""))
    target = _safe_next(form.get("next"))
    if role is None:
        return _login_page(request, target, "wrong token or password", 401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(role),
        httponly=True,
        samesite="strict",
        secure=auth.secure_cookie,
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = require(request, "viewer")
    form = await _form(request)
    auth: Authenticator = request.app.state.auth
    if not auth.csrf_ok(who, form.get("csrf")):
        raise HttpProblem(403, "missing or wrong CSRF token")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
