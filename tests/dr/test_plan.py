"""Resolution: every effective value with the level that set it; the example policy."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safehold.dr.load import load_policy, parse_policy
from safehold.dr.plan import build_plan, plan_document, resolve_objectives, resolve_retention
from safehold.dr.policy import retention_policy
from safehold.ops.retention import Duration

EXAMPLE = Path(__file__).parents[2] / "docs" / "safehold.example.toml"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)

POLICY = textwrap.dedent(
    """\
    [repositories.main]
    location = "/srv/repo"
    password_command = "pass show safehold"

    [[repositories.main.replicas]]
    location = "s3://eu/repo"
    schedule = "*/15 * * * *"

    [defaults.retention]
    keep_within = "30d"
    keep_daily = 10

    [services.sync]
    retention.keep_daily = 14
    objectives.rpo = "15m"

    [[services.sync.sources]]
    name = "db"
    kind = "postgres"
    options = { pgdata = "/pg", user = "postgres" }
    schedules = { full = "0 2 * * *", incremental = "off" }

    [services.web]
    sources = [{ name = "site", kind = "files", options.paths = ["/srv/www"] }]
    """
)


def test_values_come_from_the_service_then_the_defaults_then_built_in() -> None:
    policy = parse_policy(POLICY)
    sync = resolve_retention(policy, "sync")
    assert {k: (v.value, v.origin) for k, v in sync.items()} == {
        "keep_within": ("30d", "defaults"),
        "keep_daily": (14, "service sync"),
    }
    web = resolve_retention(policy, "web")
    assert {k: (v.value, v.origin) for k, v in web.items()} == {
        "keep_within": ("30d", "defaults"),
        "keep_daily": (10, "defaults"),
    }
    objectives = resolve_objectives(policy, "sync")
    assert {k: (v.value, v.origin) for k, v in objectives.items()} == {
        "rto": (timedelta(hours=1), "built-in default"),
        "rpo": (timedelta(minutes=15), "service sync"),
    }


def test_built_in_retention_is_the_services_30_days() -> None:
    policy = parse_policy(POLICY.replace('keep_within = "30d"\n', ""))
    within = resolve_retention(policy, "web")["keep_within"]
    assert (within.value, within.origin) == ("30d", "built-in default")
    resolved = {k: v.value for k, v in resolve_retention(policy, "sync").items()}
    assert retention_policy(resolved).within == Duration(days=30)
    assert retention_policy(resolved).daily == 14


def test_schedules_merge_with_the_kinds_defaults_and_off_removes_one() -> None:
    plan = build_plan(parse_policy(POLICY), NOW, 2)
    sync, web = plan.services
    db = sync.sources[0]
    assert [(s.name, s.spec, s.origin) for s in db.schedules] == [
        ("full", "0 2 * * *", "service sync"),
        ("logs", "continuous", "built-in default"),
    ]
    assert db.schedules[0].next == [
        datetime(2026, 11, 27, 2, 0, tzinfo=UTC),
        datetime(2026, 11, 28, 2, 0, tzinfo=UTC),
    ]
    assert db.schedules[0].argv == [
        "pg", "backup", "--type", "full", "--method", "lowlevel", "--pgdata", "/pg",
        "-U", "postgres", "--tag", "service=sync", "--tag", "source=sync/db",
    ]  # fmt: skip
    assert db.schedules[1].next == []
    assert db.schedules[1].argv is None  # archive_command does it
    site = web.sources[0]
    assert [(s.name, s.spec, s.origin) for s in site.schedules] == [
        ("backup", "0 * * * *", "built-in default")
    ]
    assert (web.repository.value, web.repository.origin) == (
        "main",
        "built-in default (the only repository)",
    )
    assert {k: (v.value, v.origin) for k, v in db.options.items()} == {
        "pgdata": ("/pg", "service sync"),
        "method": ("lowlevel", "built-in default"),
        "user": ("postgres", "service sync"),
        "wal_workers": (2, "built-in default"),
    }


def test_replicas_check_and_retention_are_scheduled_per_repository() -> None:
    plan = build_plan(parse_policy(POLICY), NOW, 3)
    (repo,) = plan.repositories
    assert repo.password_source == ("command", "pass show safehold")
    (planned,) = repo.replicas
    assert planned.location == "s3://eu/repo"
    replica = planned.schedule
    assert (replica.spec, replica.origin) == ("*/15 * * * *", "repository main")
    assert replica.next == [NOW + timedelta(minutes=m) for m in (15, 30, 45)]
    assert (repo.check.spec, repo.check.origin) == ("0 4 * * *", "built-in default")
    assert repo.check.argv == ["check", "--read-data-subset", "1/7"]
    assert repo.retention.next[0] == datetime(2026, 11, 27, 3, 30, tzinfo=UTC)


def test_a_replica_receives_archived_logs_continuously_unless_told_otherwise() -> None:
    # the database's WAL reaches the replica between the 15-minute full replications
    (planned,) = build_plan(parse_policy(POLICY), NOW, 1).repositories[0].replicas
    assert (planned.logs.spec, planned.logs.origin) == ("continuous", "built-in default")
    assert planned.logs.argv == [
        "replicate", "--to", "s3://eu/repo", "--logs-only", "--follow", "5s",
    ]  # fmt: skip
    doc = plan_document(build_plan(parse_policy(POLICY), NOW, 1))
    assert doc["repositories"][0]["replicas"][0]["logs"]["command"] == planned.logs.argv

    every = POLICY.replace('schedule = "*/15 * * * *"', 'schedule = "*/15 * * * *"\nlogs = "1m"')
    (planned,) = build_plan(parse_policy(every), NOW, 1).repositories[0].replicas
    assert (planned.logs.spec, planned.logs.origin) == ("1m", "repository main")
    assert planned.logs.argv is not None and planned.logs.argv[-1] == "1m"

    off = POLICY.replace('schedule = "*/15 * * * *"', 'schedule = "*/15 * * * *"\nlogs = "off"')
    (planned,) = build_plan(parse_policy(off), NOW, 1).repositories[0].replicas
    assert planned.logs.argv is None and "full replication only" in str(planned.logs.note)

    files_only = POLICY.replace('schedules = { full = "0 2 * * *", incremental = "off" }', "")
    files_only = files_only.replace('kind = "postgres"', 'kind = "files"').replace(
        'options = { pgdata = "/pg", user = "postgres" }', 'options.paths = ["/pg"]'
    )
    (planned,) = build_plan(parse_policy(files_only), NOW, 1).repositories[0].replicas
    assert planned.logs.argv is None and "nothing to follow" in str(planned.logs.note)


def test_schedules_are_read_in_the_policys_time_zone() -> None:
    policy = parse_policy(POLICY + '\n[daemon]\ntimezone = "Europe/Paris"\n')
    plan = build_plan(policy, NOW, 1)
    (full,) = [s for s in plan.services[0].sources[0].schedules if s.name == "full"]
    assert full.next[0].isoformat() == "2026-11-27T02:00:00+01:00"
    assert plan.daemon["timezone"].origin == "daemon"


def test_the_json_document_holds_every_value_with_its_origin() -> None:
    doc = plan_document(build_plan(parse_policy(POLICY), NOW, 1))
    source = doc["services"][0]["sources"][0]
    assert source["objectives"]["rpo"] == {"value": "15m", "seconds": 900, "origin": "service sync"}
    assert source["retention"]["keep_daily"] == {"value": 14, "origin": "service sync"}
    assert source["schedules"][0]["next"] == ["2026-11-27T02:00:00+00:00"]
    assert doc["repositories"][0]["password"] == {"from": "command", "value": "pass show safehold"}


def test_the_documented_example_is_valid_and_plans_the_readme_service() -> None:
    policy = load_policy(EXAMPLE)
    plan = build_plan(policy, NOW, 1)
    (service,) = plan.services
    kinds = {s.name: s.kind for s in service.sources}
    assert kinds == {"db": "postgres", "uploads": "bucket", "config": "files"}
    db = service.sources[0]
    assert {s.name: s.spec for s in db.schedules} == {
        "full": "0 2 * * *",
        "incremental": "0 */6 * * *",
        "logs": "continuous",
    }
    (repo,) = plan.repositories
    assert len(repo.replicas) == 1
    assert service.retention["keep_within"].value == "30d"
    assert service.objectives["rto"].value == timedelta(hours=1)


def test_the_password_reaches_a_command_through_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAIN_PW", "s3cret")
    policy = parse_policy(
        POLICY.replace('password_command = "pass show safehold"', 'password_env = "MAIN_PW"')
    )
    env = policy.repositories["main"].password_environment()
    assert env == {"SAFEHOLD_REPOSITORY": "/srv/repo", "SAFEHOLD_PASSWORD": "s3cret"}
