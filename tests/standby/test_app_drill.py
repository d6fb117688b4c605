"""An application pair's failover drill against a real HAProxy and two real instances:
`safehold drill web --failover kill` kills the active through its pidfile while a client
sends requests through the frontend, measures the time until the passive answers and the
failed requests, starts the active again (start_command), keeps the report in the drill
history; a missed failover_objective is the drill's outcome (exit 8)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from safehold.dr.drill.failover import from_app_failover
from safehold.dr.drill.status import failover_problem
from safehold.dr.drill.store import save_local
from safehold.dr.load import load_policy
from safehold.dr.standby.app_drill import AppFailoverReport
from safehold.dr.status import evaluate
from tests.service.daemon_helpers import SAFEHOLD, clean_env, init_repo
from tests.standby.app_pair import pair_policy, running_pair


def drill(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAFEHOLD, "--json", "drill", "web", "--failover", "kill", "-c", str(config)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )


def test_the_drill_measures_the_passive_taking_over_and_keeps_the_report(
    tmp_path: Path,
) -> None:
    lab = pair_policy(tmp_path)
    init_repo(str(lab.repository), lab.password_file)
    with running_pair(lab):
        old_pid = lab.pid("web1")
        proc = drill(lab.config)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["kind"] == "failover" and report["point_spec"] == "failover:app-kill"
        assert report["outcome"] == "passed" and report["point"] == "web2"
        assert 0 < report["rto_seconds"] < 30  # generous: the <= 3 s target is bench's
        answered, back = report["checks"]
        assert answered["passed"] and back["passed"], report["checks"]
        assert answered["figures"]["requests"] > 10
        assert answered["figures"]["failed_requests"] <= 1  # held by HAProxy, not failed
        assert (
            f"SIGKILL to PID {old_pid} (pidfile {lab.pidfiles['web1']})"
            in (report["steps"][0]["detail"])
        )
        assert lab.pid("web1") != old_pid and lab.served_by() == "web1"  # started again
        listed = subprocess.run(
            [*SAFEHOLD, "--json", "drills", "-c", str(lab.config)],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=True,
        )
        assert [d["id"] for d in json.loads(listed.stdout)] == [report["id"]]


def test_a_missed_failover_objective_is_the_drill_outcome_and_a_standby_problem(
    tmp_path: Path,
) -> None:
    report = AppFailoverReport(
        "web", "kill", "2026-12-06T04:00:00+00:00", "web1", serving="web2",
        failover_seconds=4.2, requests=50, failed_requests=3, active_back=True,
        back_seconds=1.5, objective_seconds=3.0,
    )  # fmt: skip
    drill = from_app_failover(report, {"rto": 3600.0, "rpo": 1800.0})
    assert drill.outcome == "objective missed"
    assert drill.error == "achieved RTO 4.2s > objective 3s"
    assert drill.objectives == {"rto": 3.0, "rpo": None}
    lab = pair_policy(tmp_path)  # nothing running: the instances are down too
    state = str(tmp_path / "state")
    save_local(drill, state)
    standby = evaluate(load_policy(str(lab.config)), datetime.now(UTC), replicas=False,
                       state_dir=state).services[0].standby  # fmt: skip
    assert standby is not None
    assert standby.problems[-1] == (
        f"the last failover drill ({drill.id}) objective missed: achieved RTO 4.2s > objective 3s"
    )  # so status exits 5 and the daemon's standby_problem alert fires
    report.objective_seconds = None  # the service's RTO then
    report.started_at = "2026-12-06T04:10:00+00:00"
    later = from_app_failover(report, {"rto": 3600.0, "rpo": 1800.0})
    assert later.outcome == "passed"
    save_local(later, state)
    assert failover_problem(state, "web") is None


def test_a_drill_whose_passive_never_answers_says_so_and_starts_the_active_again(
    tmp_path: Path,
) -> None:
    with running_pair(pair_policy(tmp_path)) as lab:
        both = f"kill -KILL {lab.pid('web1')} {lab.pid('web2')}"  # the passive dies too
        text = lab.config.read_text()
        lab.config.write_text(
            text.replace('role = "active"\n', f'role = "active"\nstop_command = "{both}"\n')
        )
        proc = subprocess.run(
            [*SAFEHOLD, "--json", "standby", "failover-drill", "web", "-c", str(lab.config),
             "--timeout", "5"],
            capture_output=True, text=True, env=clean_env(), timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["stopped_by"] == f"stop_command {both!r}"
        assert report["serving"] is None and report["failover_seconds"] is None
        assert report["notes"][0].endswith(
            "a request answered by a passive instance: not within 5 s"
        )
        assert report["failed_requests"] >= 1
        assert report["active_back"] is True  # started again all the same
        assert lab.served_by() == "web1"
