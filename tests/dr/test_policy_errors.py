"""Every kind of policy error: one line each, with file, line, key and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from safehold.dr.load import PolicyError, load_policy, parse_policy

# A valid policy; each test breaks one thing in it. Line numbers below count from 1.
VALID = """\
[repositories.main]
location = "/srv/backup/repo"
password_file = "/etc/safehold/main.password"

[services.sync]
repository = "main"

[[services.sync.sources]]
name = "db"
kind = "postgres"
options = { pgdata = "/var/lib/postgresql/15/main" }
schedules.full = "0 2 * * *"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(textwrap.dedent(text), "safehold.toml")
    return [str(p) for p in caught.value.problems]


def test_the_valid_policy_loads() -> None:
    policy = parse_policy(VALID)
    assert policy.services["sync"].sources[0].kind == "postgres"


def test_unknown_key_suggests_the_close_one_and_lists_the_rest() -> None:
    text = VALID.replace('schedules.full = "0 2 * * *"', 'schedule.full = "0 2 * * *"')
    assert problems(text) == [
        "safehold.toml:12: services.sync.sources[0].schedule: unknown key (did you mean"
        " 'schedules'? expected one of: name, description, kind, options, schedules)"
    ]


def test_wrong_type() -> None:
    text = VALID.replace('location = "/srv/backup/repo"', "location = 5")
    assert problems(text) == [
        "safehold.toml:2: repositories.main.location: expected a string, got integer 5"
    ]


def test_missing_required_key_points_at_its_table() -> None:
    text = VALID.replace('name = "db"\n', "")
    assert problems(text) == [
        "safehold.toml:8: services.sync.sources[0].name: missing required key"
    ]


def test_bad_cron() -> None:
    text = VALID.replace('"0 2 * * *"', '"0 25 * * *"')
    assert problems(text) == [
        "safehold.toml:12: services.sync.sources[0].schedules.full: invalid cron expression"
        " '0 25 * * *': is not acceptable, out of range"
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "0 2 * *",
            "a cron expression has 5 fields (minute hour day month weekday), or 6"
            " with seconds first; '0 2 * *' has 4",
        ),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires"),
        (
            "@often",
            "unknown cron alias '@often' (known: @hourly, @daily, @weekly, @monthly,"
            " @yearly, @annually, @midnight)",
        ),
    ],
)
def test_other_cron_problems(expression: str, message: str) -> None:
    text = VALID.replace('"0 2 * * *"', f'"{expression}"')
    assert problems(text) == [
        f"safehold.toml:12: services.sync.sources[0].schedules.full: {message}"
    ]


def test_bad_durations() -> None:
    text = VALID + textwrap.dedent(
        """
        [defaults.retention]
        keep_within = "30 days"
        [defaults.objectives]
        rpo = "30"
        rto = "0s"
        """
    )
    assert problems(text) == [
        "safehold.toml:15: defaults.retention.keep_within: invalid duration '30 days':"
        " no unit after 30; use numbers with units y, m, w, d, h, e.g. 30d, 2w,"
        " 1y6m, 12h",
        "safehold.toml:17: defaults.objectives.rpo: invalid duration '30': use a number with"
        " a unit s, m, h, d or w, e.g. 30m, 1h, 1h30m",
        "safehold.toml:18: defaults.objectives.rto: must be longer than zero",
    ]


def test_a_literal_password_is_refused_and_says_why() -> None:
    text = VALID.replace('password_file = "/etc/safehold/main.password"', 'password = "hunter2"')
    assert problems(text) == [
        "safehold.toml:3: repositories.main.password: a literal password is not allowed in"
        " the policy file (it would be readable by everyone who can read the file and end up"
        " in version control): use password_file, password_command or password_env"
    ]


def test_exactly_one_password_source() -> None:
    text = VALID.replace('password_file = "/etc/safehold/main.password"', "")
    assert problems(text) == [
        "safehold.toml:1: repositories.main: give exactly one of password_file,"
        " password_command, password_env (got none)"
    ]
    both = VALID.replace(
        'password_file = "/etc/safehold/main.password"',
        'password_file = "/pw"\npassword_env = "PW"',
    )
    assert problems(both) == [
        "safehold.toml:1: repositories.main: give exactly one of password_file,"
        " password_command, password_env (got password_file and password_env)"
    ]


def test_a_database_password_in_a_dsn_is_refused() -> None:
    text = VALID.replace(
        'options = { pgdata = "/var/lib/postgresql/15/main" }',
        'options = { pgdata = "/pg", dsn = "host=db password=secret" }',
    )
    assert problems(text) == [
        "safehold.toml:11: services.sync.sources[0].options.dsn: a password must not be"
        " written in the policy: use a ~/.pgpass file or PGPASSFILE for the database password"
    ]


def test_unknown_repository() -> None:
    text = VALID.replace('repository = "main"', 'repository = "mian"')
    assert problems(text) == [
        "safehold.toml:6: services.sync.repository: unknown repository 'mian' (defined: main)"
    ]


def test_repository_required_when_there_are_several() -> None:
    text = VALID.replace('repository = "main"\n', "") + textwrap.dedent(
        """
        [repositories.eu]
        location = "s3://eu"
        password_env = "EU_PASSWORD"
        """
    )
    assert problems(text) == [
        "safehold.toml:5: services.sync.repository: missing required key: more than one"
        " repository is defined (defined: eu, main)"
    ]


def test_unknown_source_kind_and_missing_kind() -> None:
    text = VALID.replace('kind = "postgres"', 'kind = "oracle"')
    assert problems(text) == [
        "safehold.toml:10: services.sync.sources[0].kind: unknown source kind 'oracle':"
        " expected one of files, postgres, mysql, sqlite, redis, command, bucket"
    ]
    text = VALID.replace('kind = "postgres"\n', "")
    assert problems(text) == [
        "safehold.toml:8: services.sync.sources[0].kind: missing required key (one of files,"
        " postgres, mysql, sqlite, redis, command, bucket)"
    ]


def test_kind_specific_options() -> None:
    text = VALID + textwrap.dedent(
        """
        [[services.sync.sources]]
        name = "files"
        kind = "files"
        options = { paths = ["relative/dir"], pgdata = "/x" }

        [[services.sync.sources]]
        name = "up"
        kind = "bucket"
        options.location = "/srv/not-a-bucket"
        schedules.full = "0 * * * *"

        [[services.sync.sources]]
        name = "pg2"
        kind = "postgres"
        options = { method = "basebackup", port = 70000 }

        [[services.sync.sources]]
        name = "mongo"
        kind = "command"
        options = { command = "mongodump 'unclosed", filename = "/m.archive" }
        """
    )
    assert problems(text) == [
        "safehold.toml:17: services.sync.sources[1].options.paths[0]: expected an absolute"
        " path, got 'relative/dir'",
        "safehold.toml:17: services.sync.sources[1].options.pgdata: unknown key (expected one"
        " of: paths, exclude, exclude_file, exclude_caches, one_file_system, tags, host)",
        "safehold.toml:22: services.sync.sources[2].options.location: expected a bucket"
        " location (s3://, az:// or gs://BUCKET/PREFIX), got '/srv/not-a-bucket'",
        "safehold.toml:23: services.sync.sources[2].schedules.full: unknown key (expected one"
        " of: backup)",
        "safehold.toml:28: services.sync.sources[3].options.port: expected a number <= 65535,"
        " got integer 70000",
        "safehold.toml:33: services.sync.sources[4].options.command: cannot parse command"
        ' "mongodump \'unclosed": No closing quotation',
    ]


def test_option_rules_between_keys() -> None:
    text = VALID.replace(
        'options = { pgdata = "/var/lib/postgresql/15/main" }', "options = { user = 'pg' }"
    )
    assert problems(text) == [
        "safehold.toml:11: services.sync.sources[0].options: pgdata is required with method"
        " 'lowlevel' (the default); use method 'basebackup' for a cluster on another host"
    ]
    text = VALID.replace(
        'options = { pgdata = "/var/lib/postgresql/15/main" }',
        'options = { method = "basebackup", host = "db1" }\nschedules.incremental = "0 * * * *"',
    )
    assert problems(text) == [
        "safehold.toml:8: services.sync.sources[0]: method 'basebackup' takes full backups"
        " only: remove schedules.incremental or set it to 'off'"
    ]


def test_duplicate_source_names_and_bad_names() -> None:
    text = VALID + textwrap.dedent(
        """
        [[services.sync.sources]]
        name = "db"
        kind = "redis"

        [services."bad name"]
        sources = [{ name = "x", kind = "redis" }]
        """
    )
    assert problems(text) == [
        "safehold.toml:15: services.sync.sources[1].name: source name 'db' already used by"
        " sources[0]",
        "safehold.toml:18: services.\"bad name\": invalid name 'bad name': use letters,"
        " digits, '_', '.' and '-', starting with a letter or digit",
    ]


def test_daemon_settings() -> None:
    text = VALID + textwrap.dedent(
        """
        [daemon]
        concurrency = 0
        jitter = 5
        timezone = "Mars/Olympus"
        check = { read_data_subset = "8/7" }
        retention = { schedule = "off", max_unused = "200%" }
        """
    )
    lines = problems(text)
    assert lines[:3] == [
        "safehold.toml:15: daemon.concurrency: expected a number >= 1, got integer 0",
        "safehold.toml:16: daemon.jitter: expected a duration such as '30m' or '1h', got integer 5",
        "safehold.toml:17: daemon.timezone: unknown time zone 'Mars/Olympus'",
    ]
    assert lines[3].startswith("safehold.toml:18: daemon.check.read_data_subset: ")
    assert lines[4] == (
        "safehold.toml:19: daemon.retention.max_unused: invalid max_unused '200%': give a"
        " share like 10% or 0.1"
    )
    assert len(lines) == 5


def test_daemon_service_settings() -> None:
    text = VALID + textwrap.dedent(
        """
        [daemon]
        metrics = "9464"
        retries = -1
        status_interval = "0s"
        state_dir = "relative/dir"

        [[daemon.alerts.webhooks]]
        url = "http://a/hook"
        url_env = "HOOK_URL"

        [[daemon.alerts.webhooks]]
        url = "ftp://a/hook"

        [[daemon.alerts.webhooks]]
        url_env = "1BAD"
        """
    )
    lines = problems(text)
    assert lines == [
        "safehold.toml:15: daemon.metrics: expected HOST:PORT such as '127.0.0.1:9464', or 'off'",
        "safehold.toml:16: daemon.retries: expected a number >= 0, got integer -1",
        "safehold.toml:17: daemon.status_interval: must be longer than zero",
        "safehold.toml:18: daemon.state_dir: expected an absolute path, got 'relative/dir'",
        "safehold.toml:20: daemon.alerts.webhooks[0]: give exactly one of url, url_file,"
        " url_env (got url and url_env)",
        "safehold.toml:24: daemon.alerts.webhooks[1]: expected an http:// or https:// URL,"
        " got 'ftp://a/hook'",
        "safehold.toml:28: daemon.alerts.webhooks[2].url_env: expected the name of an"
        " environment variable",
    ]
    bad_port = VALID + '\n[daemon]\nmetrics = "127.0.0.1:99999"\n'
    assert problems(bad_port) == [
        "safehold.toml:15: daemon.metrics: invalid port in '127.0.0.1:99999': expected 1 to 65535"
    ]


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    text = VALID.replace('location = "/srv/backup/repo"', "location = 5").replace(
        '"0 2 * * *"', '"nonsense"'
    )
    lines = problems(text)
    assert [line.split(":")[1] for line in lines] == ["2", "12"]


def test_invalid_toml_gives_its_line() -> None:
    assert problems(VALID + "schedules.backup = \n") == [
        "safehold.toml:13: invalid TOML: Invalid value"
    ]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "nope.toml")
    assert str(caught.value) == f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"


def test_no_services_or_repositories() -> None:
    assert problems('[repositories.main]\nlocation = "/r"\npassword_env = "PW"\n') == [
        "safehold.toml:1: services: missing required key"
    ]


def test_replicas() -> None:
    text = VALID.replace(
        "[services.sync]",
        textwrap.dedent(
            """\
            [[repositories.main.replicas]]
            location = "s3://eu/repo"
            [[repositories.main.replicas]]
            location = "s3://eu/repo"
            schedule = "sometimes"
            [[repositories.main.replicas]]
            location = "/srv/backup/repo"
            [[repositories.main.replicas]]
            location = "s3://us/repo"
            logs = "sometimes"
            [[repositories.main.replicas]]
            location = "s3://ap/repo"
            logs = 5

            [services.sync]"""
        ),
    )
    assert problems(text) == [
        "safehold.toml:8: repositories.main.replicas[1].location: replica location already"
        " given in replicas[0]",
        "safehold.toml:9: repositories.main.replicas[1].schedule: expected 'after-backup' or"
        " a cron expression: a cron expression has 5 fields (minute hour day month weekday),"
        " or 6 with seconds first; 'sometimes' has 1",
        "safehold.toml:11: repositories.main.replicas[2].location: a replica must be in"
        " another location than its repository",
        "safehold.toml:14: repositories.main.replicas[3].logs: expected 'continuous', 'off' or"
        " an interval such as '1m': invalid duration 'sometimes': use a number with a unit s,"
        " m, h, d or w, e.g. 30m, 1h, 1h30m",
        "safehold.toml:17: repositories.main.replicas[4].logs: expected 'continuous', 'off' or"
        " an interval such as '1m', got integer 5",
    ]


def test_tables_counts_and_log_schedules() -> None:
    text = VALID.replace(
        'schedules.full = "0 2 * * *"', 'schedules.logs = "*/5 * * * *"'
    ) + textwrap.dedent(
        """
        [services.sync.retention]
        keep_daily = -2
        keep_weekly = "lots"

        [services.web]
        sources = []

        [services.ops]
        objectives = "fast"
        sources = [{ name = "x", kind = "redis", options = 5 }]
        """
    )
    assert problems(text) == [
        "safehold.toml:12: services.sync.sources[0].schedules.logs: expected 'continuous' or"
        " 'off', got string '*/5 * * * *'",
        "safehold.toml:15: services.sync.retention.keep_daily: invalid count '-2': negative"
        " counts other than -1 are not allowed",
        "safehold.toml:16: services.sync.retention.keep_weekly: invalid count 'lots': use a"
        " number, or unlimited",
        "safehold.toml:19: services.web.sources: must not be empty",
        "safehold.toml:22: services.ops.objectives: expected a table, got string 'fast'",
        "safehold.toml:23: services.ops.sources[0].options: expected a table, got integer 5",
    ]
