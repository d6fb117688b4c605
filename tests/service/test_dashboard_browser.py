"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
daemon and repository: every page renders without console errors, a service's card
follows it out of its objective and back in after an operator's "Back up now", the chart
has one point per successful backup plus now, and the action needs an operator.

Screenshots of every page are saved for review under $SAFEHOLD_TEST_ARTIFACTS (default:
pytest's temporary directory, printed at the end); they are never committed."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.dashboard_helpers import (
    OPERATOR_TOKEN,
    VIEWER_PASSWORD,
    VIEWER_TOKEN,
    VIEWER_USER,
    Site,
    make_site,
    start_daemon,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)

CHROMIUM = "/usr/bin/chromium"
RPO_SECONDS = 30  # amber from 22.5 s after the backup, red after 30 s


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("SAFEHOLD_TEST_ARTIFACTS")
    root = Path(base) if base else tmp_path_factory.getbasetemp()
    path = root / "dashboard-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = start_daemon(
        make_site(tmp_path_factory.mktemp("dashboard-browser"), rpo=f"{RPO_SECONDS}s")
    )
    try:
        yield running
    finally:
        running.stop()


class Tab:
    """One browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, site: Site, artifacts: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.site = site
        self.artifacts = artifacts
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str, shot: str | None = None) -> Any:
        response = self.page.goto(self.site.url + path, wait_until="networkidle")
        assert response is not None and response.status == 200, (path, response)
        if shot is not None:
            self.page.screenshot(path=str(self.artifacts / f"{shot}.png"), full_page=True)
        return response

    def login(self, token: str) -> None:
        self.open("/login")
        self.page.fill("#token-form input[name=token]", token)
        self.page.click("#token-form button")
        self.page.wait_for_load_state("networkidle")

    def login_password(self, user: str, password: str) -> None:
        self.open("/login")
        self.page.fill("#password-form input[name=user]", user)
        self.page.fill("#password-form input[name=password]", password)
        self.page.click("#password-form button")
        self.page.wait_for_load_state("networkidle")

    def card_state(self, service: str) -> str:
        self.open("/")
        return str(self.page.get_attribute(f'.card[data-service="{service}"]', "data-state"))

    def wait_card(self, service: str, state: str, timeout: float = 90) -> float:
        """Reload the overview until ``service``'s card is ``state``; when it was."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            found = self.card_state(service)
            seen.append(found)
            if found == state:
                return time.monotonic()
            time.sleep(0.4)
        raise AssertionError(f"card {service} never {state}; seen {seen[-10:]}\n{self.site.text()}")

    def close(self) -> None:
        self.context.close()


def successful_backups(site: Site, service: str) -> int:
    runs = site.json("/api/v1/jobs?limit=1000", token=OPERATOR_TOKEN)["runs"]
    return sum(
        1
        for r in runs
        if r["action"] == "backup"
        and r["target"].startswith(f"{service}/")
        and r["outcome"] in ("success", "partial")
    )


def test_cards_follow_a_service_out_of_its_objective_and_back(
    browser: Any, site: Site, artifacts: Path
) -> None:
    tab = Tab(browser, site, artifacts)
    try:
        tab.page.goto(site.url + "/", wait_until="networkidle")
        assert tab.page.url.startswith(site.url + "/login")  # reads need a login
        tab.page.screenshot(path=str(artifacts / "login.png"), full_page=True)
        tab.login("not-the-token-at-all")
        assert tab.page.is_visible("#login-error")
        assert tab.errors == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]
        tab.errors.clear()  # the refused login's 401, wanted; nothing else may fail
        tab.login(VIEWER_TOKEN)

        # the daemon backs app up at start (green while that backup is young, not
        # asserted: a loaded machine may be slow), then amber, then red as time passes
        assert tab.card_state("db") == "red"  # its backups fail: never backed up
        tab.page.screenshot(path=str(artifacts / "overview-start.png"), full_page=True)
        amber_at = tab.wait_card("app", "amber")
        tab.page.screenshot(path=str(artifacts / "overview-amber.png"), full_page=True)
        red_at = tab.wait_card("app", "red")
        assert red_at > amber_at
        tab.page.screenshot(path=str(artifacts / "overview-red.png"), full_page=True)
        assert tab.page.text_content("#verdict").strip().startswith("Outside objectives: app, db")

        # a viewer cannot back up: the button is disabled and a forged POST is refused
        tab.open("/services/app")
        assert tab.page.is_disabled("#backup-now") and tab.page.is_disabled("#drill-now")
        forged = tab.page.request.post(site.url + "/services/app/backup", form={"csrf": "x"})
        assert forged.status == 403
        assert tab.page.request.post(site.url + "/api/v1/services/app/backup").status == 403
        before = successful_backups(site, "app")

        # an operator's session: a POST without the CSRF token is refused too
        tab.page.click("text=log out")
        tab.login(OPERATOR_TOKEN)
        assert tab.page.request.post(site.url + "/services/app/backup").status == 403
        tab.open("/services/app")
        tab.page.click("#backup-now")
        tab.page.wait_for_load_state("networkidle")
        assert "app/files backup" in tab.page.text_content("#queued")
        tab.wait_card("app", "green")  # back within its objective
        tab.page.screenshot(path=str(artifacts / "overview-back-in.png"), full_page=True)
        assert successful_backups(site, "app") == before + 1
        # the API from the same session: the CSRF header is what makes the POST count
        tab.open("/services/app")
        assert tab.page.request.post(site.url + "/api/v1/services/app/backup").status == 403
        csrf = tab.page.get_attribute("#backup-form input[name=csrf]", "value")
        answer = tab.page.request.post(
            site.url + "/api/v1/services/app/backup", headers={"X-CSRF-Token": str(csrf)}
        )
        assert answer.status == 202 and answer.json()["jobs"] == ["app/files backup"]
        assert tab.errors == []
    finally:
        tab.close()


def test_every_page_renders_without_errors_and_the_chart_has_its_points(
    browser: Any, site: Site, artifacts: Path
) -> None:
    tab = Tab(browser, site, artifacts)
    try:
        tab.login_password(VIEWER_USER, VIEWER_PASSWORD)  # a viewer from the password file
        assert tab.page.text_content(".who .role") == "viewer"
        site.drill("app")
        site.drill("app")
        snapshot = site.json("/api/v1/services/app/snapshots")[-1]["id"]
        drill = wait_for(  # the dashboard keeps the drill list a few seconds
            "both drills listed", lambda: len(found := site.json("/api/v1/drills")) == 2 and found
        )[-1]["id"]
        data = str(site.base / "data")
        pages = {
            "drill": f"/drills/{drill}",
            "drill-report": f"/drills/{drill}/report",
            "overview": "/",
            "service-app": "/services/app",
            "service-db": "/services/db",
            "jobs": "/jobs",
            "jobs-filtered": "/jobs?job=app%2Ffiles+backup&outcome=success&limit=5",
            "snapshots": "/services/app/snapshots",
            "tree-root": f"/services/app/snapshots/{snapshot}",
            "tree": f"/services/app/snapshots/{snapshot}?path={data}",
            "file": f"/services/app/snapshots/{snapshot}/file?path={data}/a.txt",
        }
        for name, path in pages.items():
            tab.open(path, shot=name)
        assert tab.errors == [], tab.errors

        # the service's chart: one point per successful backup, and now
        tab.open("/services/app")
        points = tab.page.locator("#exposure-chart circle.point").count()
        expected = successful_backups(site, "app") + 1
        assert points == expected
        assert len(site.json("/api/v1/services/app/exposure")["points"]) == expected
        assert tab.page.locator("#exposure-chart circle.point.now").count() == 1
        assert tab.page.locator("#exposure-chart line.objective").count() == 1
        # the drill charts: one bar per drill, for RTO and for RPO
        assert tab.page.locator("#drill-charts svg").count() == 2
        bars = tab.page.locator("#drill-charts svg").first.locator("rect")
        assert bars.count() == len(site.json("/api/v1/drills?service=app")) == 2
        assert tab.page.locator("#drills tbody tr").count() == 2
        tab.open("/")
        assert tab.page.get_attribute('.card[data-service="app"] .last-drill', "data-drill") == (
            "passed"
        )
        # db was never backed up: no point at all, and no line
        tab.open("/services/db")
        assert tab.page.locator("#exposure-chart circle.point").count() == 0

        # times are the viewer's: the script rewrote the UTC text
        tab.open("/services/app")
        shown = tab.page.text_content("time .abs") or ""
        assert "UTC" not in shown and shown.strip()
        assert "ago" in (tab.page.text_content("time .rel") or "")

        # jobs: failures come first
        tab.open("/jobs")
        failures = tab.page.locator("#failures tbody tr")
        assert failures.count() >= 1
        assert "db/pg full" in failures.first.text_content()
        assert "user=backup password=***" in failures.first.text_content()  # masked
        order = tab.page.evaluate("[...document.querySelectorAll('table.runs')].map(t => t.id)")
        assert order == ["failures", "runs"]

        # the file page shows the size and the SHA-256, and offers no download
        tab.open(f"/services/app/snapshots/{snapshot}/file?path={data}/a.txt")
        assert "6 bytes" in tab.page.text_content("#file-size")
        assert tab.page.is_visible("#no-download") and tab.page.locator("#download").count() == 0
        download = tab.page.request.get(
            site.url + f"/services/app/snapshots/{snapshot}/download?path={data}/a.txt"
        )
        assert download.status == 403
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
        print(f"dashboard screenshots in {artifacts}")
