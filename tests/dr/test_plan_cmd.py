"""``safehold plan`` as a user runs it: text, --json, errors; and the commands it plans."""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main

from safehold.cli.main import COMMAND_MODULES
from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.schedule import JobId
from tests.conftest import SAFEHOLD

EXAMPLE = Path(__file__).parents[2] / "docs" / "safehold.example.toml"
NOW = "2026-11-26T15:00:00Z"


def safehold(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    return subprocess.run(
        [*SAFEHOLD, *args], capture_output=True, text=True, env={**environ, **(env or {})}
    )


def test_plan_prints_each_service_and_source_with_runs_and_origins() -> None:
    proc = safehold("plan", "--config", str(EXAMPLE), "--now", NOW, "--count", "2")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "1 service, 1 repository; times in UTC, from 2026-11-26 15:00" in text
    assert "service sync: repository main [service sync]" in text
    assert "keep_within 30d [defaults], keep_daily 7 [service sync]" in text
    assert "objectives  rto 1h [defaults], rpo 15m [service sync]" in text
    assert "  source db (postgres)\n" in text
    assert (
        "    full         0 2 * * *      [service sync]       next 2026-11-27 02:00,"
        " 2026-11-28 02:00\n"
        "                 runs: safehold pg backup --type full --method lowlevel"
        " --pgdata /var/lib/postgresql/15/main -H /var/run/postgresql -U postgres"
        " --tag service=sync --tag source=sync/db\n"
    ) in text
    assert "incremental  0 */6 * * *    [service sync]       next 2026-11-26 18:00," in text
    assert "logs         continuous     [service sync]\n" in text
    assert "  source uploads (bucket)\n" in text
    assert "  source config (files)\n" in text
    assert "  replica s3://backups-us/sync?region=us-east-2\n" in text
    assert "daemon: concurrency 2 [daemon], jitter 2m [daemon], timezone UTC [daemon]" in text


def test_plan_json_is_one_document_and_the_config_may_come_from_the_environment() -> None:
    proc = safehold(
        "plan", "--json", "--now", NOW, "-n", "1", env={"SAFEHOLD_CONFIG": str(EXAMPLE)}
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["message_type"] == "plan"
    assert doc["config"] == str(EXAMPLE)
    (service,) = doc["services"]
    db = service["sources"][0]
    assert db["kind"] == "postgres"
    assert db["schedules"][0] == {
        "name": "full",
        "schedule": "0 2 * * *",
        "origin": "service sync",
        "next": ["2026-11-27T02:00:00+00:00"],
        "command": [
            "pg", "backup", "--type", "full", "--method", "lowlevel",
            "--pgdata", "/var/lib/postgresql/15/main", "-H", "/var/run/postgresql",
            "-U", "postgres", "--tag", "service=sync", "--tag", "source=sync/db",
        ],
        "note": None,
    }  # fmt: skip
    assert db["objectives"]["rto"] == {"value": "1h", "seconds": 3600, "origin": "defaults"}
    assert db["options"]["method"] == {"value": "lowlevel", "origin": "built-in default"}


def test_an_invalid_policy_exits_1_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "safehold.toml"
    config.write_text(
        EXAMPLE.read_text()
        .replace('full = "0 2 * * *"', 'full = "0 2 * *"')
        .replace('password_file = "/etc/safehold/main.password"', 'password = "x"')
    )
    proc = safehold("plan", "--config", str(config))
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{config}:18: repositories.main.password: a literal password")
    line = next(  # the line of the broken schedule, wherever the example puts it
        n for n, text in enumerate(config.read_text().splitlines(), 1) if '0 2 * *"' in text
    )
    assert lines[1] == (
        f"{config}:{line}: services.sync.sources[0].schedules.full: a cron expression has 5"
        " fields (minute hour day month weekday), or 6 with seconds first; '0 2 * *' has 4"
    )


def test_without_a_policy_file_plan_says_how_to_give_one() -> None:
    proc = safehold("plan")
    assert proc.returncode == 1
    assert proc.stderr == "safehold: no policy file given: use --config or SAFEHOLD_CONFIG\n"


# -- every planned command is one the CLI accepts ----------------------------------------


@functools.cache
def _cli() -> Any:
    """The whole command tree, built once: Typer takes ~0.8 s to build it (a runbook's
    dozens of commands took 47 s to parse)."""
    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"safehold.cli.{module}")
    from safehold.cli.app import app

    return typer.main.get_command(app)  # typer 0.28 bundles its own click


def _parse(argv: list[str]) -> Any:
    """Parse ``safehold ARGV`` down to the leaf command, without running it."""
    command: Any = _cli()
    ctx = command.make_context("safehold", list(argv), resilient_parsing=False)
    while hasattr(command, "resolve_command"):  # a group
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        name, sub, rest = command.resolve_command(ctx, [*protected, *ctx.args])
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx


SOURCES = """
[[services.all.sources]]
name = "files"
kind = "files"
options = { paths = ["/a", "/b"], exclude = ["*.tmp"], exclude_file = ["/x"], exclude_caches = true, one_file_system = true, tags = ["t"], host = "h" }
[[services.all.sources]]
name = "pg"
kind = "postgres"
options = { pgdata = "/pg", dsn = "dbname=postgres", host = "/run/pg", port = 5433, user = "u", hostname = "h", tags = ["t"], spool = "/spool", wal_workers = 3 }
[[services.all.sources]]
name = "pgremote"
kind = "postgres"
options = { method = "basebackup", host = "db1" }
[[services.all.sources]]
name = "maria"
kind = "mysql"
options = { socket = "/run/mysqld.sock", host = "h", port = 3306, user = "root", defaults_file = "/my.cnf", instance = "i", tmpdir = "/tmp", tags = ["t"], binlog_interval = 30 }
[[services.all.sources]]
name = "maria2"
kind = "mysql"
options = { user = "root" }
schedules = { logs = "*/5 * * * *" }
[[services.all.sources]]
name = "lite"
kind = "sqlite"
options = { database = "/db.sqlite", as_path = "apps/db", tmpdir = "/tmp", tags = ["t"], host = "h" }
[[services.all.sources]]
name = "cache"
kind = "redis"
options = { host = "h", port = 6379, socket = "/r.sock", auth_file = "/auth", as_path = "r/dump.rdb", tags = ["t"] }
[[services.all.sources]]
name = "mongo"
kind = "command"
options = { command = "mongodump --archive", filename = "/mongo.archive", tags = ["t"], host = "h" }
[[services.all.sources]]
name = "bucket"
kind = "bucket"
options = { location = "s3://b/p?region=x", tags = ["t"], host = "h" }
"""


def test_every_planned_command_parses_with_the_real_cli(tmp_path: Path) -> None:
    config = tmp_path / "all.toml"
    config.write_text('[repositories.r]\nlocation = "/r"\npassword_env = "PW"\n' + SOURCES)
    policy = load_policy(config)
    commands = []
    for source in policy.services["all"].sources:
        for schedule in source.effective_schedules():
            for command in job_commands(policy, JobId("backup", f"all/{source.name}", schedule)):
                argv = command.argv[1:]  # after --json
                commands.append(argv)
                ctx = _parse(argv)
                assert ctx.command.name is not None
    for action, schedule in (("check", "check"), ("retention", "retention"), ("replicate", "/x")):
        for command in job_commands(policy, JobId(action, "r", schedule)):
            commands.append(command.argv[1:])
            assert _parse(command.argv[1:]).command.name is not None
    assert len(commands) == 15 + 4  # files 1, pg 3, pgremote 1, mysql 3 + 3, 4 others; check,
    # forget + prune, replicate
    assert ["mysql", "binlog-archive", "--user", "root"] in commands
    assert ["forget", "--tag", "service=all", "--keep-within", "30d"] in commands
    assert any(c[:2] == ["pg", "wal-pusher"] for c in commands)
    params = _parse(commands[0]).params
    assert list(params["paths"]) == ["/a", "/b"]
    assert params["exclude_caches"] is True


@pytest.mark.parametrize("args", [["--json", "plan"], ["plan", "--json"]])
def test_json_is_the_global_flag(args: list[str]) -> None:
    proc = safehold(*args, "--config", str(EXAMPLE), "--now", NOW)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["services"][0]["name"] == "sync"
