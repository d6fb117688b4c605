"""The dashboard's ``[daemon] http*`` keys: safe bindings only, secrets never literal,
every problem as ``file:line: key: message``."""

from __future__ import annotations

import pytest

from safehold.dr.load import PolicyError, parse_policy
from safehold.dr.policy_http import is_loopback

BASE = """\
[repositories.main]
location = "/srv/backup/repo"
password_file = "/etc/safehold/main.password"

[services.sync]
[[services.sync.sources]]
name = "files"
kind = "files"
options.paths = ["/srv/data"]

[daemon]
"""  # the [daemon] table starts on line 11; keys added below start on line 12


def problems(daemon: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(BASE + daemon, "safehold.toml")
    return [str(p) for p in caught.value.problems]


def test_off_by_default_and_loopback_needs_nothing_else() -> None:
    assert parse_policy(BASE).daemon.http == "off"
    policy = parse_policy(BASE + 'http = "127.0.0.1:8480"\n')
    assert policy.daemon.http == "127.0.0.1:8480"
    assert not policy.daemon.http_allow_download and not policy.daemon.http_insecure


def test_a_public_address_needs_tls_or_insecure() -> None:
    assert problems('http = "0.0.0.0:8480"\n') == [
        "safehold.toml:12: daemon.http: 0.0.0.0:8480 is not a loopback address: give"
        " http_tls_cert and http_tls_key, or set http_insecure = true to serve plain HTTP"
        " on purpose"
    ]


def test_a_public_address_needs_a_credential() -> None:
    assert problems('http_insecure = true\nhttp = "10.0.0.5:8480"\n') == [
        "safehold.toml:13: daemon.http: 10.0.0.5:8480 is not a loopback address:"
        " [daemon.http_auth] needs a viewer or operator token or password file"
    ]
    policy = parse_policy(
        BASE
        + 'http_tls_cert = "/etc/c.pem"\nhttp_tls_key = "/etc/k.pem"\nhttp = "[::]:8480"\n'
        + '[daemon.http_auth]\noperator_token_file = "/etc/safehold/operator.token"\n'
    )
    assert policy.daemon.http_auth.token_source("operator") == (
        "file",
        "/etc/safehold/operator.token",
    )


def test_tls_cert_and_key_go_together() -> None:
    assert problems('http_tls_cert = "/etc/c.pem"\nhttp = "127.0.0.1:8480"\n') == [
        "safehold.toml:13: daemon.http: http_tls_cert and http_tls_key go together: give"
        " both or neither"
    ]


def test_a_literal_token_is_refused_and_one_source_per_role() -> None:
    found = problems(
        '[daemon.http_auth]\nviewer_token = "hunter2hunter2hunter2"\n'
        'operator_token_file = "/a"\noperator_token_env = "OP_TOKEN"\n'
    )
    assert found[0].startswith(
        "safehold.toml:13: daemon.http_auth.viewer_token: a literal token is not allowed"
    )
    assert "use viewer_token_file or viewer_token_env" in found[0]
    assert "hunter2" not in "".join(found)
    found = problems('[daemon.http_auth]\noperator_token_file = "/a"\noperator_token_env = "T"\n')
    assert found == [
        "safehold.toml:12: daemon.http_auth: give at most one of operator_token_file and"
        " operator_token_env"
    ]


def test_bad_values_name_their_key() -> None:
    assert problems('http = "8480"\nhttp_allow_download = "yes"\n') == [
        "safehold.toml:12: daemon.http: expected HOST:PORT such as '127.0.0.1:9464', or 'off'",
        "safehold.toml:13: daemon.http_allow_download: expected true or false, got string 'yes'",
    ]
    assert problems('[daemon.http_auth]\nviewer_password_file = "relative"\n') == [
        "safehold.toml:13: daemon.http_auth.viewer_password_file: expected an absolute path,"
        " got 'relative'"
    ]


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("127.9.9.9:1", True),
        ("[::1]:1", True),
        ("localhost:1", True),
        ("0.0.0.0:1", False),
        ("[::]:1", False),
        ("example.org:1", False),
    ],
)
def test_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback
