"""``[services.NAME.standby.app]``: a valid pair loads, shows in ``plan`` and becomes an
HAProxy section with a ``backup`` server; each mistake is one line with file, line and
key; a configuration HAProxy refuses is not written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from safehold.dr.load import PolicyError, parse_policy
from safehold.dr.standby.config import haproxy_config, resolve_setup
from tests.conftest import SAFEHOLD

# Line numbers in the tests below count from 1.
VALID = """\
[repositories.main]
location = "/srv/backup/repo"
password_file = "/etc/safehold/main.password"

[services.web]

[[services.web.sources]]
name = "conf"
kind = "files"
options = { paths = ["/etc/web"] }

[services.web.standby.app]
port = 8080
check = "http"
check_path = "/health"

[[services.web.standby.app.instances]]
name = "web1"
address = "10.0.0.5:8081"
role = "active"

[[services.web.standby.app.instances]]
name = "web2"
address = "10.0.0.6:8081"
role = "passive"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "safehold.toml")
    return [str(p) for p in caught.value.problems]


def test_a_pair_alone_needs_no_postgres_and_gets_a_backup_server() -> None:
    setup = resolve_setup(parse_policy(VALID), "web")
    assert setup.source is None and setup.standby.app is not None
    text = haproxy_config(setup, "/run/haproxy.sock")
    assert "listen web_app\n    bind 127.0.0.1:8080\n    mode http\n" in text
    assert (
        "    server web1 10.0.0.5:8081 check\n    server web2 10.0.0.6:8081 check backup\n" in text
    )
    assert "http-check send meth GET uri /health" in text and "expect status 200" in text
    assert "inter 1s fastinter 250ms downinter 1s fall 2 rise 2" in text
    assert "on-error fail-check on-marked-down shutdown-sessions" in text
    # retries outlast the slowest detection (1 s + 250 ms + 2 timed-out checks of 1 s)
    assert "    retries 5\n    option redispatch 1\n" in text
    assert "retry-on" not in text and "listen web_write" not in text
    tcp = VALID.replace('check = "http"\ncheck_path = "/health"', 'mode = "tcp"\ncheck = "tcp"')
    text = haproxy_config(resolve_setup(parse_policy(tcp), "web"), "/run/haproxy.sock")
    assert "    mode tcp\n" in text and "httpchk" not in text and "X-Safehold" not in text


def test_an_instance_listed_twice() -> None:
    text = VALID.replace('name = "web2"', 'name = "web1"')
    assert problems(text) == [
        "safehold.toml:23: services.web.standby.app.instances[1].name: instance 'web1' is"
        " already listed as instances[0]"
    ]
    text = VALID.replace('"10.0.0.6:8081"', '"10.0.0.5:8081"')
    assert problems(text) == [
        "safehold.toml:24: services.web.standby.app.instances[1].address: instances[0]"
        " already answers at 10.0.0.5:8081"
    ]


def test_a_port_clash_with_an_instance_or_the_postgres_ports() -> None:
    text = VALID.replace('"10.0.0.5:8081"', '"127.0.0.1:8080"')
    assert problems(text) == [
        "safehold.toml:13: services.web.standby.app.port: port 8080 on 127.0.0.1 is already"
        " used by instances[0]"
    ]
    text = VALID.replace(
        "[services.web.standby.app]",
        "[services.web.standby]\nwrite_port = 8080\n"
        'etcd = ["10.0.0.1:2379"]\n[services.web.standby.app]',
    )
    assert (
        "services.web.standby.app.port: port 8080 on 127.0.0.1 is already used by HAProxy's"
        " write_port" in "\n".join(problems(text))
    )


def test_a_missing_health_check() -> None:
    text = VALID.replace('check = "http"\ncheck_path = "/health"\n', "")
    assert problems(text) == [
        "safehold.toml:12: services.web.standby.app.check: missing required key"
    ]
    text = VALID.replace('check_path = "/health"\n', "")
    assert problems(text) == [
        'safehold.toml:14: services.web.standby.app.check: check = "http" needs check_path,'
        " the path HAProxy GETs"
    ]
    text = VALID.replace('"/health"', '"health"')
    assert problems(text) == [
        "safehold.toml:15: services.web.standby.app.check_path: expected a path such as"
        " '/health', got string 'health'"
    ]


def test_one_active_and_a_passive() -> None:
    text = VALID.replace('role = "passive"', 'role = "active"')
    assert problems(text) == [
        "safehold.toml:25: services.web.standby.app.instances[1].role: instances[0] is already"
        ' the active instance; the others are role = "passive"'
    ]
    alone = VALID[: VALID.index('\n[[services.web.standby.app.instances]]\nname = "web2"')]
    assert problems(alone + "\n") == [
        "safehold.toml:17: services.web.standby.app.instances: an application pair needs a"
        ' role = "passive" instance too'
    ]
    text = VALID.replace('role = "passive"', 'role = "standby"')
    assert problems(text) == [
        "safehold.toml:25: services.web.standby.app.instances[1].role: expected 'active' or"
        " 'passive', got string 'standby'"
    ]


def test_replayed_requests_in_http_only() -> None:
    text = VALID.replace("port = 8080", "port = 8080\nreplay_requests = true")
    config = haproxy_config(resolve_setup(parse_policy(text), "web"), "/run/haproxy.sock")
    assert "    option redispatch 1\n    retry-on conn-failure empty-response\n" in config
    text = text.replace("port = 8080", 'port = 8080\nmode = "tcp"')
    assert problems(text) == [
        "safehold.toml:15: services.web.standby.app.replay_requests: HAProxy replays requests"
        ' in mode = "http" only'
    ]


def test_plan_shows_the_pair() -> None:
    from datetime import UTC, datetime

    from safehold.cli.plan_cmd import render_plan
    from safehold.dr.plan import build_plan, plan_document

    plan = build_plan(parse_policy(VALID), datetime(2026, 12, 6, tzinfo=UTC), 1)
    text = render_plan(plan, "safehold.toml")
    assert (
        "    application pair (http) behind HAProxy 127.0.0.1:8080: check GET /health = 200"
        " every 1s, down after 2, up after 2\n    instance web1: 10.0.0.5:8081 (active)\n"
        "    instance web2: 10.0.0.6:8081 (passive)\n" in text
    )
    doc = plan_document(plan)["services"][0]["standby"]["app"]
    assert doc["check_interval"] == 1.0 and doc["instances"][1]["role"] == "passive"


def test_a_configuration_haproxy_refuses_is_one_line_and_not_written(tmp_path: Path) -> None:
    config = tmp_path / "safehold.toml"
    config.write_text(VALID.replace("port = 8080", 'port = 8080\nlisten = "no-such-host.invalid"'))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
    proc = subprocess.run(
        [*SAFEHOLD, "standby", "config", "web", "-c", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"safehold: haproxy -c refused {out}/haproxy.cfg: [ALERT]")
    assert list(out.iterdir()) == []
