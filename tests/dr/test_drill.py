"""``safehold drill`` on a service of files and SQLite (no database server): a passing
drill with its report in the state directory and the repository, a missed RTO objective
(exit 8), a flipped byte in a pack (exit 7, naming the pack and the file), a sandbox that
would overlap the live service refused, and the random point chooser's spread."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safehold.dr.drill.point import Window, choose_moment
from safehold.repo.snapshot import parse_time
from tests.dr.test_recover import _backup, _service
from tests.service.daemon_helpers import SAFEHOLD, clean_env


def _settings(tmp_path: Path, extra: str = "") -> str:
    return (
        f'[services.app.drill]\nschedule = "off"\n'
        '[[services.app.drill.checks]]\nname = "meta readable"\n'
        'command = "test -s {meta.path}"\n'
        f"{extra}"
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nmetrics = "off"\n'
    )


def _drill(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [
            *SAFEHOLD,
            "--json",
            "drill",
            "app",
            "-c",
            config,
            "--sandbox",
            config.parent / "sb",
            *args,
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    docs = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    report = next((d for d in docs if d.get("message_type") == "drill"), {})
    return proc.returncode, report, proc.stderr


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_drill_passes_reports_each_step_and_leaves_the_live_service_alone(
    tmp_path: Path,
) -> None:
    config, live = _service(tmp_path, _settings(tmp_path))
    before = _tree_digest(live)
    code, report, err = _drill(config)
    assert code == 0, (err, report.get("error"))
    assert report["outcome"] == "passed" and report["rto_seconds"] > 0
    assert report["rpo_seconds"] is not None and report["rto_met"] is True
    steps = {(s["step"], s["source"]) for s in report["steps"]}
    assert {("preflight", None), ("restore", "files"), ("restore", "meta")} <= steps
    assert {("verify", "files"), ("verify", "meta"), ("health", "meta readable")} <= steps
    assert all(s["seconds"] is not None for s in report["steps"])
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["files data"]["passed"] and checks["files data"]["figures"]["files"] == 20
    assert checks["meta data"]["detail"].endswith("integrity_check ok")
    assert checks["meta readable"]["passed"]
    assert _tree_digest(live) == before
    assert not list((tmp_path / "sb").iterdir()), "the sandbox was not removed"
    state = tmp_path / "state" / "drills" / "app"
    assert (state / f"{report['id']}.json").exists()
    assert "<svg" in (state / f"{report['id']}.html").read_text()
    listed = subprocess.run(
        [*SAFEHOLD, "--json", "drills", "-c", config],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert listed.returncode == 0, listed.stderr
    assert [d["id"] for d in json.loads(listed.stdout)] == [report["id"]]
    page = subprocess.run(
        [*SAFEHOLD, "drills", "show", report["id"][:12], "--html", "-c", config],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert page.returncode == 0, page.stderr
    assert "<svg" in page.stdout and "files data" in page.stdout
    assert "<script" not in page.stdout and "src=" not in page.stdout  # standalone
    _backup(config)  # replicates: the report is copied, and check does not choke on it
    assert (tmp_path / "replica" / "reports" / "app" / report["id"]).exists()
    checked = subprocess.run(
        [*SAFEHOLD, "--repo", tmp_path / "repo", "--password-file", tmp_path / "pw", "check"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert checked.returncode == 0, checked.stderr


def test_a_missed_rto_objective_exits_8_with_the_data_right(tmp_path: Path) -> None:
    slow = '[[services.app.drill.checks]]\ncommand = "sleep 1.2"\n'
    objectives = '[services.app.objectives]\nrto = "1s"\n'
    config, _live = _service(tmp_path, _settings(tmp_path, slow) + objectives)
    code, report, err = _drill(config)
    assert code == 8, (err, report)
    assert report["outcome"] == "objective missed"
    assert all(c["passed"] for c in report["checks"])
    assert report["rto_met"] is False and report["rto_seconds"] > 1
    assert "achieved RTO" in err and err.count("\n") == 1


def test_a_flipped_byte_in_a_pack_fails_the_drill_naming_pack_and_file(tmp_path: Path) -> None:
    from safehold.archive.browse import find_node
    from safehold.dr.jobs import source_tag
    from safehold.dr.load import load_policy
    from safehold.dr.status import open_policy_repository

    config, live = _service(tmp_path, _settings(tmp_path))
    policy = load_policy(config)
    repo = open_policy_repository(policy.repositories["main"])
    repo.load_index()
    snap = next(s for s in repo.list_snapshots() if source_tag("app", "files") in s.tags)
    node = find_node(repo, snap, str(live / "files" / "sub" / "3.txt"))
    assert node is not None
    pack = repo.locate(node.content[0]).pack
    path = tmp_path / "repo" / "data" / pack[:2] / pack
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    code, report, err = _drill(config)
    assert code == 7, (err, report)
    assert report["outcome"] in ("failed", "check failed")
    assert pack[:16] in report["error"] or pack in report["error"], report["error"]
    assert "sub/" in report["error"]
    assert err.count("\n") == 1 and err.startswith("safehold: Drill of app failed:")
    status = subprocess.run(
        [*SAFEHOLD, "status", "-c", config, "--no-replicas"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert status.returncode == 5, status.stdout + status.stderr
    assert f"  drill: PROBLEM: the last drill ({report['id']}) failed: " in status.stdout


def test_a_sandbox_inside_a_live_path_is_refused(tmp_path: Path) -> None:
    config, live = _service(tmp_path, _settings(tmp_path))
    proc = subprocess.run(
        [*SAFEHOLD, "drill", "app", "-c", config, "--sandbox", live / "files" / "drills"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("safehold: Recovery refused, nothing was written: the sandbox")
    assert f"overlaps the live path {live / 'files'}" in proc.stderr
    assert not any((live / "files" / "drills").iterdir())


def test_random_points_spread_over_the_window() -> None:
    oldest = datetime(2026, 1, 1, tzinfo=UTC)
    window = Window(oldest, oldest + timedelta(days=7), {})
    rng = random.Random(16)
    points = [parse_time(str(choose_moment("random", window, rng).value)) for _ in range(20)]
    assert all(window.oldest <= p <= window.newest for p in points)
    quarters = {int((p - oldest) / (window.newest - oldest) * 4) for p in points}
    assert quarters == {0, 1, 2, 3}
    assert len(set(points)) == 20
    assert choose_moment("latest", window).kind == "latest"
    assert choose_moment("cut:abc", window).value == "abc"


def test_the_drill_table_is_checked_with_file_and_line(tmp_path: Path) -> None:
    from tests.dr.test_recover import BASE, problems

    text = BASE + (
        '[services.app.drill]\npoint = "sometimes"\nmax_age = "0s"\n'
        '[[services.app.drill.checks]]\nsql = "SELECT 1"\nsource = "files"\n'
    )
    assert problems(text) == [
        "safehold.toml:15: services.app.drill.point: expected latest, random, cut:ID or a"
        " time (RFC 3339), got 'sometimes'",
        "safehold.toml:16: services.app.drill.max_age: must be longer than zero",
        "safehold.toml:19: services.app.drill.checks[0].source: an sql check needs a postgres"
        " or mysql source, not files",
    ]


def test_the_daemon_drills_on_its_schedule_at_low_priority(tmp_path: Path) -> None:
    from safehold.dr.load import load_policy
    from safehold.dr.status import evaluate
    from safehold.service.metrics import _drill_metrics
    from tests.service.daemon_helpers import DaemonRun

    every = (
        f'[services.app.drill]\nschedule = "*/2 * * * * *"\npoint = "latest"\n'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nmetrics = "off"\n'
        'status_interval = "1h"\n'
    )
    config, _live = _service(tmp_path, every)
    plan = subprocess.run(
        [*SAFEHOLD, "plan", "-c", config], capture_output=True, text=True, env=clean_env()
    )
    assert "  drill       schedule */2 * * * * *, point latest, max_age 8d\n" in plan.stdout
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        daemon.wait_for(
            "two drills",
            lambda runs: sum(r.job == "drill app" and r.outcome == "success" for r in runs) >= 2,
            timeout=120,
        )
    finally:
        assert daemon.stop() == 0
    reports = sorted((tmp_path / "state" / "drills" / "app").glob("*.json"))
    docs = [json.loads(p.read_text()) for p in reports]
    assert len(docs) >= 2 and all(d["outcome"] == "passed" for d in docs)
    assert {d["nice"] for d in docs} == {19}
    spans = sorted((d["started"], d["ended"]) for d in docs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # one at a time
    status = evaluate(
        load_policy(config), datetime.now(UTC), replicas=False, state_dir=str(tmp_path / "state")
    )
    (service,) = status.services
    assert service.drill_problem is None and status.within_objectives
    metrics = {m.name: m.samples[0].value for m in _drill_metrics(status) if m.samples}
    assert metrics["safehold_drill_passed"] == 1
    assert metrics["safehold_drill_rto_seconds"] == docs[-1]["rto_seconds"]
    assert metrics["safehold_drill_last_success_timestamp_seconds"] == pytest.approx(
        parse_time(docs[-1]["ended"]).timestamp()
    )


def test_a_failover_drill_joins_the_history_judged_like_any_drill() -> None:
    from dataclasses import replace

    from safehold.dr.drill.failover import from_failover
    from safehold.dr.drill.report import DrillReport, render_html
    from safehold.dr.standby.drill import FailoverDrillReport

    done = FailoverDrillReport(
        "app", "app-ha", "kill", "2026-12-06T01:00:00+00:00", "n1", "n2",
        write_downtime_seconds=4.2, longest_write_gap_seconds=4.5, commits_acknowledged=120,
        old_primary_rejoined=True, rejoin_seconds=8.0,
    )  # fmt: skip
    objectives: dict[str, float | None] = {"rto": 60.0, "rpo": 0.0}
    report = from_failover(done, objectives)
    assert (report.kind, report.outcome, report.rto_seconds, report.rpo_seconds) == (
        "failover", "passed", 4.2, 0.0,
    )  # fmt: skip
    assert DrillReport.from_doc(json.loads(json.dumps(report.to_doc()))) == report
    assert "no acknowledged commit lost" in render_html(report, [report])
    lost = from_failover(replace(done, commits_missing=[57]), objectives)
    assert lost.outcome == "check failed"
    assert lost.error is not None and "120 commits acknowledged, 1 missing on n2" in lost.error
    slow = from_failover(replace(done, write_downtime_seconds=90.0), objectives)
    assert slow.outcome == "objective missed" and slow.rto_met is False


def test_a_sandbox_file_system_too_small_is_refused_in_one_line(tmp_path: Path) -> None:
    config, _live = _service(tmp_path, _settings(tmp_path))
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", small], check=True)
    try:
        proc = subprocess.run(
            [*SAFEHOLD, "drill", "app", "-c", config, "--sandbox", small],
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1
        assert proc.stderr.startswith("safehold: Recovery refused, nothing was written: ")
        assert " GB needed, " in proc.stderr and proc.stderr.endswith(" GB free\n")
        assert not any(small.iterdir())  # the sandbox directory went with the refusal
    finally:
        subprocess.run(["umount", small], check=True)
