"""The FastAPI application: the JSON API under /api/v1, the pages, the static files, and
the rules every request passes: size limits, authentication, errors as one line.

Errors are one sentence and a status code: JSON ``{"error": ...}`` under /api/, a small
page elsewhere; a page that needs a login redirects to it. Nothing from the exception but
its message is shown (no traceback, no request echo), and messages go through the
redactor like everything else.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from safehold import __version__
from safehold.errors import InvalidArgument, InvalidPath, SafeholdError, SnapshotNotFound
from safehold.service.http.auth import SESSION_COOKIE, Authenticator, Identity
from safehold.service.http.state import Dashboard, Missing
from safehold.service.http.views import register_filters

__all__ = ["API_PREFIX", "HttpProblem", "create_app", "identity", "page", "require"]

log = logging.getLogger("safehold.http")

API_PREFIX = "/api/v1"
MAX_QUERY = 4096  # characters of query string; more is refused with 400
MAX_PATH = 4096
HERE = Path(__file__).parent


class HttpProblem(Exception):
    """A request that cannot be served as asked: its status code and one sentence."""

    def __init__(self, status: int, message: str, login: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.login = login  # a page may send the browser to the login form instead


def identity(request: Request) -> Identity | None:
    auth: Authenticator = request.app.state.auth
    return auth.identify(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))


def require(request: Request, role: str) -> Identity:
    """The request's identity, which must hold ``role``; 401 or 403 otherwise."""
    found = identity(request)
    if found is None:
        sent = "authorization" in request.headers or SESSION_COOKIE in request.cookies
        raise HttpProblem(
            401, "invalid credentials" if sent else "authentication required", login=True
        )
    if not found.may(role):
        if found.via == "open":
            raise HttpProblem(401, f"this needs the {role} role: log in", login=True)
        raise HttpProblem(403, f"this needs the {role} role")
    return found


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _problem_response(request: Request, status: int, message: str, login: bool) -> Response:
    dashboard: Dashboard = request.app.state.dashboard
    message = dashboard.redactor.text(message)
    if _is_api(request):
        headers = {"WWW-Authenticate": 'Bearer realm="safehold"'} if status == 401 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    if login and status == 401 and request.method == "GET":
        target = urllib.parse.quote(request.url.path, safe="/")
        return RedirectResponse(f"/login?next={target}", status_code=303)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "who": None},
        status_code=status,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpProblem)
    async def problem(request: Request, exc: HttpProblem) -> Response:
        return _problem_response(request, exc.status, exc.message, exc.login)

    @app.exception_handler(Missing)
    async def unknown(request: Request, exc: Missing) -> Response:
        return _problem_response(request, 404, str(exc), False)

    @app.exception_handler(SafeholdError)
    async def safehold_error(request: Request, exc: SafeholdError) -> Response:
        """Bad input is 400, a snapshot that is not there 404; anything else is the
        repository failing the server (unreachable, wrong password, damaged): 503."""
        message = str(exc).splitlines()[0]
        if isinstance(exc, InvalidArgument | InvalidPath):
            return _problem_response(request, 400, message, False)
        if isinstance(exc, SnapshotNotFound):
            return _problem_response(request, 404, message, False)
        return _problem_response(request, 503, f"cannot read the repository: {message}", False)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return _problem_response(
            request, 400, f"bad request: {where}: {first.get('msg', 'invalid')}", False
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "not found" if exc.status_code == 404 else str(exc.detail)
        return _problem_response(request, exc.status_code, message, False)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.error("internal error serving %s", request.url.path, exc_info=exc)
        return _problem_response(request, 500, "internal error (see the server's log)", False)


def create_app(dashboard: Dashboard, auth: Authenticator) -> FastAPI:
    """The application over ``dashboard``; ``auth`` decides who may do what."""
    from safehold.service.http import api, pages

    app = FastAPI(
        title="safehold",
        version=__version__,
        summary="Protection status, jobs, snapshots and replicas of a safehold policy.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
    )
    app.state.dashboard = dashboard
    app.state.auth = auth
    templates = Jinja2Templates(directory=HERE / "templates")
    register_filters(templates.env)
    app.state.templates = templates

    @app.middleware("http")
    async def limits(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if len(request.url.query) > MAX_QUERY or len(request.url.path) > MAX_PATH:
            return _problem_response(
                request, 400, "request too large: query or path too long", False
            )
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
            " frame-ancestors 'none'; form-action 'self'",
        )
        return response

    _install_error_handlers(app)
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def page(request: Request, template: str, who: Identity, **context: Any) -> HTMLResponse:
    """Render ``template`` with what every page shows (who is logged in, CSRF token)."""
    templates: Jinja2Templates = request.app.state.templates
    auth: Authenticator = request.app.state.auth
    dashboard: Dashboard = request.app.state.dashboard
    return templates.TemplateResponse(
        request,
        template,
        {
            "who": who,
            "csrf": auth.csrf_token(who),
            "auth_configured": auth.configured,
            "config": dashboard.config_path,
            "timezone": dashboard.policy.daemon.timezone,
            **context,
        },
    )
