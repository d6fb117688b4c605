"""An application pair behind a real HAProxy from the generated configuration: the
active instance killed (SIGKILL by PID), requests answered by the passive; `standby
status` and `safehold status` show it; the active back, requests go to it again."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from safehold.dr.load import load_policy
from safehold.dr.standby.app_status import app_status
from safehold.dr.status import evaluate
from safehold.service.metrics import _standby_metrics
from tests.service.daemon_helpers import SAFEHOLD, clean_env
from tests.service.dashboard_helpers import make_site, start_serve
from tests.standby.app_pair import AppPairLab, pair_policy, running_pair
from tests.standby.servers import wait_for


def safehold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAFEHOLD, *args], capture_output=True, text=True, env=clean_env(), timeout=60
    )


def requests_until_served_by(lab: AppPairLab, name: str) -> list[str | None]:
    """Who answered each request through HAProxy (None: it failed), one after the other
    until ``name`` answers; fails after a generous deadline (the target is bench's)."""
    answers: list[str | None] = []
    deadline = time.monotonic() + 15
    while not answers or answers[-1] != name:
        assert time.monotonic() < deadline, answers
        answers.append(lab.served_by())
    return answers


def test_the_passive_serves_when_the_active_dies_and_the_active_takes_back(
    tmp_path: Path,
) -> None:
    with running_pair(pair_policy(tmp_path)) as lab:
        config = str(lab.config)
        pair = load_policy(config).services["web"].standby
        assert pair is not None and pair.app is not None
        healthy = app_status(pair.app)
        assert healthy.serving == "web1" and healthy.problems() == []
        assert "  standby: web1 serves, web2 stand by" in safehold("status", "-c", config).stdout
        lab.kill("web1")
        answers = requests_until_served_by(lab, "web2")
        # HAProxy holds requests until web1 is marked down, then retries them on web2:
        # only one the dying process had already accepted can fail
        assert answers.count(None) <= 1, answers
        assert [lab.served_by() for _ in range(3)] == ["web2"] * 3
        down = safehold("standby", "status", "web", "-c", config)
        assert "web1         127.0.0.1:" in down.stdout and "active (DOWN: " in down.stdout
        assert "requests to web2" in down.stdout, down.stdout
        status = safehold("status", "-c", config, "--no-replicas")
        assert status.returncode == 5, status.stdout + status.stderr
        assert "  standby: PROBLEM: web1 (active) is down: " in status.stdout
        assert "  standby: PROBLEM: the passive web2 serves in place of web1" in status.stdout
        metrics = {
            (m.name, m.labels.get("instance", "")): m.value
            for family in _standby_metrics(evaluate(load_policy(config), datetime.now(UTC)))
            for m in family.samples
        }
        assert metrics[("safehold_standby_app_instance_up", "web1")] == 0
        assert metrics[("safehold_standby_app_serving", "web2")] == 1
        assert metrics[("safehold_standby_problems", "")] == 2
        assert ("safehold_standby_primary_up", "") not in metrics  # no PostgreSQL here
        lab.start("web1")
        wait_for("requests back on web1", lambda: lab.served_by() == "web1", 30)
        back = app_status(pair.app)
        assert back.serving == "web1" and back.problems() == []


def test_a_tcp_pair_checked_by_connection(tmp_path: Path) -> None:
    lab = pair_policy(tmp_path, check='mode = "tcp"\ncheck = "tcp"')
    with running_pair(lab):
        cfg = (lab.out / "haproxy.cfg").read_text()
        assert "    mode tcp\n" in cfg and "httpchk" not in cfg
        pair = load_policy(str(lab.config)).services["web"].standby
        assert pair is not None and pair.app is not None
        lab.kill("web2")
        alone = app_status(pair.app)
        assert alone.serving == "web1"
        assert alone.problems()[-1] == "no healthy passive: web1 runs alone"
        lab.start("web2")
        haproxy = lab.haproxy
        assert haproxy is not None  # web2 back in HAProxy's eyes (rise 2) before the kill
        wait_for("web2 up", lambda: "web2" in haproxy.servers_up("web_app"), 30)
        lab.kill("web1")
        answers = requests_until_served_by(lab, "web2")
        assert answers.count(None) <= 1, answers
        down = app_status(pair.app)
        # nothing names the serving instance through a TCP frontend: HAProxy's rule then
        assert down.serving == "web2" and not down.instances[0].healthy
        assert "web1 (active) is down: Connection refused" in down.problems()


def test_the_dashboard_shows_the_pair_as_standby_status_does(tmp_path: Path) -> None:
    with running_pair(pair_policy(tmp_path / "pair")) as lab:
        site = make_site(tmp_path / "site")
        policy = lab.config.read_text()
        pair = policy[policy.index("[services.web.standby.app]") : policy.index("[daemon]")]
        site.config.write_text(
            site.config.read_text() + pair.replace("services.web.", "services.app.")
        )
        start_serve(site)
        try:
            site.wait_up()
            cli = site.cli_json("standby", "status", "app")
            assert cli["app"]["serving"] == "web1" and cli["healthy"] is True, cli
            assert site.json("/api/v1/standbys/app") == cli
            page = bytes(site.get("/services/app")[2]).decode()
            assert "sends requests to <strong>web1</strong>" in page
            assert 'data-instance="web2"' in page and "standby-nodes" not in page
            overview = bytes(site.get("/")[2]).decode()
            assert "standby: web1 serves, passive ready" in overview
        finally:
            site.stop()
