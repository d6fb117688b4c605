"""The ``[services.NAME.standby]`` table: valid tables load and show in ``plan``; each
mistake is one line with file, line and key."""

from __future__ import annotations

import pytest

from safehold.dr.load import PolicyError, parse_policy
from safehold.dr.standby.config import haproxy_config, patroni_config, resolve_setup

# Line numbers in the tests below count from 1.
VALID = """\
[repositories.main]
location = "/srv/backup/repo"
password_file = "/etc/safehold/main.password"

[services.db]

[[services.db.sources]]
name = "pg"
kind = "postgres"
options = { pgdata = "/srv/pg1" }

[services.db.standby]
etcd = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
write_port = 5000
read_port = 5001

[[services.db.standby.nodes]]
name = "pg1"
host = "10.0.0.1"
pgdata = "/srv/pg1"

[[services.db.standby.nodes]]
name = "pg2"
host = "10.0.0.2"
pgdata = "/srv/pg2"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "safehold.toml")
    return [str(p) for p in caught.value.problems]


def test_the_valid_table_loads_with_patroni_and_haproxy_defaults() -> None:
    standby = parse_policy(VALID).services["db"].standby
    assert standby is not None
    assert [n.name for n in standby.nodes] == ["pg1", "pg2"]
    assert standby.ttl.total_seconds() == 20 and standby.loop_wait.total_seconds() == 2


def test_a_node_listed_twice() -> None:
    text = VALID.replace('name = "pg2"', 'name = "pg1"')
    assert problems(text) == [
        "safehold.toml:23: services.db.standby.nodes[1].name: node 'pg1' is already listed"
        " as nodes[0]"
    ]
    text = VALID.replace(
        'host = "10.0.0.2"\npgdata = "/srv/pg2"',
        'host = "10.0.0.1"\npgdata = "/srv/pg1"\nport = 5433\nrest_port = 8009',
    )
    assert problems(text) == [
        "safehold.toml:25: services.db.standby.nodes[1].pgdata: nodes[0] already keeps its"
        " data in /srv/pg1 on 10.0.0.1"
    ]


def test_two_servers_on_one_port_of_one_host() -> None:
    text = VALID.replace(
        'host = "10.0.0.2"\n', 'host = "10.0.0.1"\nport = 5433\nrest_port = 5432\n'
    )
    assert problems(text) == [
        "safehold.toml:26: services.db.standby.nodes[1].rest_port: port 5432 on 10.0.0.1 is"
        " already used by PostgreSQL of nodes[0]"
    ]
    text = VALID.replace("read_port = 5001", "read_port = 5000")
    assert problems(text) == [
        "safehold.toml:15: services.db.standby.read_port: port 5000 on 127.0.0.1 is already"
        " used by HAProxy's write_port"
    ]


def test_patroni_timings_it_would_adjust_silently() -> None:
    text = VALID.replace("read_port = 5001", 'read_port = 5001\nttl = "10s"')
    assert problems(text) == [
        "safehold.toml:16: services.db.standby.ttl: Patroni's minimum is 20s, got 10s"
    ]
    text = VALID.replace("read_port = 5001", 'read_port = 5001\nretry_timeout = "10s"')
    assert problems(text) == [
        "safehold.toml:16: services.db.standby.retry_timeout: Patroni needs loop_wait + 2 x"
        " retry_timeout <= ttl (2s + 2 x 10s > 20s): it would shorten them itself"
    ]


def test_haproxy_timings_take_milliseconds_and_down_nodes_are_checked_often() -> None:
    text = haproxy_config(resolve_setup(parse_policy(VALID), "db"), "/run/haproxy.sock")
    assert "default-server inter 1s downinter 200ms fall 2 rise 1" in text
    timings = 'read_port = 5001\ncheck_interval = "500ms"\ncheck_down_interval = "2s"'
    text = haproxy_config(
        resolve_setup(parse_policy(VALID.replace("read_port = 5001", timings)), "db"), "/s"
    )
    assert "default-server inter 500ms downinter 2s fall 2" in text
    text = VALID.replace("read_port = 5001", 'read_port = 5001\ncheck_down_interval = "0ms"')
    assert problems(text) == [
        "safehold.toml:16: services.db.standby.check_down_interval: must be longer than zero"
    ]


def test_the_source_must_be_postgres_and_nodes_at_least_two() -> None:
    text = VALID.replace("write_port = 5000", 'source = "files"\nwrite_port = 5000')
    assert problems(text) == [
        "safehold.toml:14: services.db.standby.source: unknown source 'files' (pg)"
    ]
    one_node = VALID[: VALID.index('\n[[services.db.standby.nodes]]\nname = "pg2"')] + "\n"
    assert problems(one_node) == [
        "safehold.toml:17: services.db.standby.nodes: a standby needs at least 2 nodes, got 1"
    ]
    text = VALID.replace('"10.0.0.3:2379"]', '"10.0.0.3"]')
    assert problems(text) == [
        "safehold.toml:13: services.db.standby.etcd[2]: expected HOST:PORT such as"
        " '10.0.0.5:2379', got string '10.0.0.3'"
    ]


def test_generated_haproxy_checks_patroni_and_cuts_clients_of_a_dead_primary() -> None:
    setup = resolve_setup(parse_policy(VALID), "db")
    text = haproxy_config(setup, "/run/haproxy.sock")
    write = text[text.index("listen db_write") : text.index("listen db_read")]
    assert "bind 127.0.0.1:5000" in write and "uri /primary" in write
    assert "on-marked-down shutdown-sessions" in write
    assert "server pg2 10.0.0.2:5432 check port 8008" in write
    assert "uri /replica" in text[text.index("listen db_read") :]
    assert "    retries 0\n" in text
    node = patroni_config(setup, setup.node("pg2"))
    assert node["restapi"]["connect_address"] == "10.0.0.2:8008"
    assert node["bootstrap"]["dcs"]["ttl"] == 20
    assert node["postgresql"]["create_replica_methods"] == ["safehold", "basebackup"]
    command = node["postgresql"]["safehold"]["command"]
    assert command.endswith("pg standby create --patroni") and "/srv/backup/repo" in command
    parameters = node["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert "wal-push --primary %p" in parameters["archive_command"]
    assert parameters["archive_mode"] == "always"  # replicas archive too (test_failover)


def test_plan_shows_the_standby() -> None:
    from datetime import UTC, datetime

    from safehold.cli.plan_cmd import render_plan
    from safehold.dr.plan import build_plan, plan_document

    plan = build_plan(parse_policy(VALID), datetime(2026, 12, 6, tzinfo=UTC), 1)
    text = render_plan(plan, "safehold.toml")
    assert "  standby (Patroni scope db, etcd 10.0.0.1:2379, 10.0.0.2:2379" in text
    assert "10.0.0.3:2379): asynchronous, watchdog automatic" in text
    assert "HAProxy writes 127.0.0.1:5000, reads 127.0.0.1:5001; checks every 1s (200ms" in text
    assert "    node pg2: 10.0.0.2:5432 (REST 8008) data /srv/pg2" in text
    doc = plan_document(plan)["services"][0]["standby"]
    assert doc["ttl"] == 20 and doc["scope"] == "db" and len(doc["nodes"]) == 2
    assert doc["check_down_interval"] == 0.2 and doc["check_interval"] == 1


def test_patroni_watchdog_mode() -> None:
    """A frozen primary's Patroni (tests/standby/test_split_brain.py) is stopped for good
    only by a watchdog: its mode is written into each node's file, a wrong one refused."""
    setup = resolve_setup(parse_policy(VALID), "db")
    assert patroni_config(setup, setup.node("pg1"))["watchdog"] == {"mode": "automatic"}
    text = VALID.replace("read_port = 5001", 'read_port = 5001\nwatchdog = "required"')
    setup = resolve_setup(parse_policy(text), "db")
    assert patroni_config(setup, setup.node("pg1"))["watchdog"] == {"mode": "required"}
    [problem] = problems(VALID.replace("read_port = 5001", 'read_port = 5001\nwatchdog = "on"'))
    assert problem == (
        "safehold.toml:16: services.db.standby.watchdog: expected 'off', 'automatic' or"
        " 'required', got string 'on'"
    )
