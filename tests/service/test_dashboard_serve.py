"""``safehold serve``: the dashboard without the daemon, over TLS; and the bindings that
are refused at start, each with one line."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.schedule import JobId
from tests.service.dashboard_helpers import (
    OPERATOR_TOKEN,
    SAFEHOLD,
    Site,
    make_site,
    start_serve,
    wait_for,
)
from tests.service.test_dashboard_api import stable

pytestmark = pytest.mark.timeout(300)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def backup(site: Site) -> None:
    policy = load_policy(site.config)
    (command,) = job_commands(policy, JobId("backup", "app/files", "backup"))
    subprocess.run(
        [*SAFEHOLD, *command.argv], env={**site.env, **command.env}, check=True, capture_output=True
    )


def test_serve_alone_over_tls_reads_but_does_not_act(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    site = make_site(
        tmp_path / "site",
        extra_daemon=f'http_tls_cert = "{cert}"\nhttp_tls_key = "{key}"\nhttp_allow_download = true',
    )
    site.url = site.url.replace("http://", "https://")
    site.tls = ssl.create_default_context(cafile=str(cert))
    start_serve(site, "--json")
    try:
        site.wait_up()
        assert site.log is not None
        assert f'"url": "https://127.0.0.1:{site.port}/"' in site.log.read_text()
        api = site.json("/api/v1/status")
        assert stable(api) == stable(site.cli_json("status"))
        assert api["within_objectives"] is False  # nothing was ever backed up

        # a backup made by hand, as the daemon would run it; its file can be downloaded
        backup(site)
        wait_for("the new snapshot", lambda: site.json("/api/v1/services/app/snapshots"))
        path = f"{site.base / 'data'}/sub/b.bin"
        page = site.get(f"/services/app/snapshots/latest/file?path={path}")[2].decode()
        assert 'id="download"' in page
        status, headers, body = site.get(f"/services/app/snapshots/latest/download?path={path}")
        assert status == 200 and body == (site.base / "data" / "sub" / "b.bin").read_bytes()
        assert headers["content-disposition"] == "attachment; filename*=UTF-8''b.bin"

        status, _, body = site.get("/api/v1/services/app/backup", OPERATOR_TOKEN, "POST")
        assert status == 409 and "needs the daemon" in json.loads(body)["error"]
        status, _, body = site.get("/api/v1/services/app/drill", OPERATOR_TOKEN, "POST")
        assert status == 409 and json.loads(body)["error"].startswith("run drill now needs")
        status, _, body = site.get("/api/v1/jobs")
        assert status == 400 and "has the daemon run?" in json.loads(body)["error"]
        # the login cookie is Secure under TLS, HttpOnly and SameSite=Strict
        import urllib.request

        request = urllib.request.Request(
            site.url + "/login", data=f"token={OPERATOR_TOKEN}".encode(), method="POST"
        )

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object) -> None:
                return None

        opener = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPSHandler(context=site.tls)
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=30)
        assert answer.value.code == 303
        cookie = answer.value.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        # plain HTTP on the TLS port is not served
        with pytest.raises(OSError):
            urllib.request.urlopen(site.url.replace("https://", "http://") + "/", timeout=10)
    finally:
        site.stop()


def test_a_public_address_without_tls_is_refused_at_start(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    proc = subprocess.run(
        [*SAFEHOLD, "serve", "-c", str(site.config), "--listen", "0.0.0.0:1"],
        capture_output=True,
        text=True,
        env=site.env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "safehold: 0.0.0.0:1 is not a loopback address: give http_tls_cert and http_tls_key,"
        " or set http_insecure = true to serve plain HTTP on purpose"
    ]


def test_a_daemon_whose_dashboard_port_is_taken_stops_with_one_line(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", site.port))
        taken.listen(1)
        proc = subprocess.run(
            [*SAFEHOLD, "daemon", "-c", str(site.config)],
            capture_output=True,
            text=True,
            env=site.env,
            timeout=60,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"safehold: cannot serve the dashboard on 127.0.0.1:{site.port}: Address already in use"
        ' (set [daemon] http to another HOST:PORT, or "off")'
    )


def test_an_unreadable_repository_is_503_and_the_status_says_why(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site.base / "repo").rename(site.base / "repo-gone")
    start_serve(site)
    try:
        site.wait_up()
        (source,) = site.json("/api/v1/services/app")["sources"]
        assert source["problem"].startswith("repository main unreadable")
        status, _, body = site.get("/api/v1/services/app/snapshots")
        assert status == 503
        assert json.loads(body)["error"].startswith("cannot read the repository: ")
        status, _, page = site.get("/services/app/snapshots")
        assert status == 503 and b"cannot read the repository" in page
        overview = site.get("/")[2].decode()
        assert 'data-service="app" data-state="red"' in overview
    finally:
        site.stop()


def test_unusable_credentials_stop_the_start_with_one_line(tmp_path: Path) -> None:
    site = make_site(tmp_path)

    def serve_error() -> str:
        proc = subprocess.run(
            [*SAFEHOLD, "serve", "-c", str(site.config)],
            capture_output=True,
            text=True,
            env=site.env,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        return line

    (site.base / "viewer.token").write_text("short\n")
    assert serve_error() == (
        f"safehold: the viewer token in file {site.base / 'viewer.token'} is shorter than"
        " 16 characters"
    )
    (site.base / "viewer.token").unlink()
    assert serve_error() == (
        f"safehold: cannot read viewer token file {site.base / 'viewer.token'}:"
        " No such file or directory"
    )
    (site.base / "viewer.token").write_text("x" * 20)
    (site.base / "viewers.htpasswd").write_text("ann:plaintext-password\n")
    assert serve_error() == (
        f"safehold: {site.base / 'viewers.htpasswd'}:1: expected user:hash with a bcrypt"
        " ($2b$...) or argon2 ($argon2id$...) hash"
    )
