"""The JSON API against a running daemon: the documents equal the CLI's ``--json``, bad
input is refused with one line, tokens decide who may read and act, nothing served
reveals a secret, and the OpenAPI schema describes every route."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.service.dashboard_helpers import (
    DSN_SECRET,
    OPERATOR_TOKEN,
    VIEWER_PASSWORD,
    VIEWER_TOKEN,
    VIEWER_USER,
    Site,
    make_site,
    start_daemon,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

VOLATILE = re.compile(r'"(now|exposure|exposure_seconds)": [^,}]+')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One daemon for the module: app's files backed up at start, db's backup failing."""
    running = start_daemon(make_site(tmp_path_factory.mktemp("dashboard-api")))
    try:
        wait_for(
            "the first backups and the replication",
            lambda: (
                (jobs := running.json("/api/v1/jobs")["runs"])
                and {r["job"] for r in jobs if r["outcome"] != "running"}
                >= {
                    "app/files backup",
                    "db/pg full",
                    f"replicate main to {running.base / 'replica'}",
                }
            ),
        )
        wait_for("a status that knows every job's outcome", lambda: settled(running))
        running.drill("app")  # one stored drill report (the replica now misses it)
        drilled = datetime.now(UTC)
        wait_for(
            "a status evaluated after the drill",
            lambda: datetime.fromisoformat(running.json("/api/v1/status")["now"]) > drilled,
        )
        yield running
    finally:
        running.stop()


def settled(site: Site) -> bool:
    doc = site.json("/api/v1/status")
    app, db = doc["services"]
    return bool(
        app["within_objectives"]
        and db["sources"][0]["last_job_outcome"] == "failed"
        and doc["replicas"][0]["lag_seconds"] == 0
    )


def stable(doc: Any) -> str:
    """The document without what moves with the clock."""
    return VOLATILE.sub(r'"\1": X', json.dumps(doc, sort_keys=True))


def test_status_equals_the_cli_document(site: Site) -> None:
    api = site.json("/api/v1/status")
    cli = site.cli_json("status")
    assert api["message_type"] == "status" and api["config"] == str(site.config)
    # the failing source's error quotes its DSN with the password masked, by both
    assert DSN_SECRET not in stable(cli) and "password=***" in stable(cli)
    assert stable(api) == stable(cli)
    assert [s["name"] for s in api["services"]] == ["app", "db"]
    app = site.json("/api/v1/services/app")
    assert stable(app) == stable(api["services"][0])
    replicas = site.json("/api/v1/replicas")
    assert stable(replicas["replicas"]) == stable(cli["replicas"])
    assert replicas["replicas"][0]["lag_seconds"] == 0


def test_jobs_equal_the_cli_document_with_its_filters(site: Site) -> None:
    for query, args in [
        ("?job=app/files%20backup", ["--job", "app/files backup"]),
        ("?limit=1", ["--limit", "1"]),
        ("?outcome=success&limit=5", ["--outcome", "success", "-n", "5"]),
    ]:
        assert site.json(f"/api/v1/jobs{query}") == site.cli_json("jobs", *args), query
    # the failed backup's error quotes the DSN, its password masked in both
    api = site.json("/api/v1/jobs?outcome=failed")
    cli = site.cli_json("jobs", "--outcome", "failed")
    assert DSN_SECRET not in json.dumps(cli) and "password=***" in json.dumps(cli)
    assert json.dumps(api) == json.dumps(cli)


def test_snapshots_and_trees_equal_the_cli_documents(site: Site) -> None:
    api = site.json("/api/v1/services/app/snapshots?source=files")
    cli = site.cli_lines("snapshots", "--tag", "source=app/files")[0]
    assert api == cli and len(api) >= 1
    assert site.json("/api/v1/services/app/snapshots") == api  # the service's only source
    assert site.json("/api/v1/services/db/snapshots") == []
    snap = api[-1]["id"]
    data = str(site.base / "data")
    tree = site.json(f"/api/v1/services/app/snapshots/{snap[:8]}/tree?path={data}")
    listed = [e for e in site.cli_lines("ls", snap, data) if e["path"] != data]
    below = [e for e in listed if e["path"].count("/") == data.count("/") + 1]
    assert tree["entries"] == below
    assert {e["name"] for e in tree["entries"]} == {"a.txt", "sub"}
    file = site.json(f"/api/v1/services/app/snapshots/latest/file?path={data}/a.txt")
    assert file["size"] == 6 and file["type"] == "file"
    import hashlib

    assert file["sha256"] == hashlib.sha256(b"alpha\n").hexdigest()
    assert len(file["blobs"]) == 1 and len(file["blobs"][0]) == 64


def test_drills_equal_the_cli_documents(site: Site) -> None:
    listed = site.json("/api/v1/drills")
    assert listed == site.cli_json("drills") and len(listed) == 1
    assert site.json("/api/v1/drills?service=app") == site.cli_json("drills", "--service", "app")
    assert site.json("/api/v1/drills?service=db") == []
    (drill,) = listed
    assert drill["service"] == "app" and drill["outcome"] == "passed"
    assert site.json(f"/api/v1/drills/{drill['id'][:12]}") == site.cli_json(
        "drills", "show", drill["id"]
    )
    status, _, body = site.get("/api/v1/drills/19990101")
    assert status == 404 and json.loads(body) == {"error": "no drill report '19990101'"}
    assert site.get("/api/v1/drills?service=nope")[0] == 404
    status, headers, page = site.get(f"/drills/{drill['id']}/report")
    assert status == 200 and b"<style>" in page
    assert headers["content-security-policy"].startswith("default-src 'none'")


def test_unknown_things_are_404_json(site: Site) -> None:
    status, headers, body = site.get("/api/v1/services/nope")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "unknown service 'nope'"}
    assert site.get("/api/v1/services/nope/snapshots")[0] == 404
    assert site.get("/api/v1/nothing")[0] == 404
    status, _, body = site.get("/api/v1/services/app/snapshots/ffffffff/tree")
    assert status == 404 and "ffffffff" in json.loads(body)["error"]
    status, _, body = site.get("/api/v1/services/app/snapshots/latest/file?path=/not/there")
    assert status == 400 and "/not/there" in json.loads(body)["error"]


def test_bad_and_huge_input_is_400(site: Site) -> None:
    status, _, body = site.get("/api/v1/jobs?job=" + "x" * 10_000)
    assert status == 400 and json.loads(body) == {
        "error": "request too large: query or path too long"
    }
    assert site.get("/api/v1/jobs?limit=0")[0] == 400
    assert site.get("/api/v1/jobs?limit=99999999999999999999")[0] == 400
    assert site.get("/api/v1/jobs?limit=ten")[0] == 400
    status, _, body = site.get("/api/v1/jobs?outcome=bogus")
    assert status == 400 and "unknown outcome" in json.loads(body)["error"]
    assert site.get("/api/v1/services/app/exposure?hours=100000")[0] == 400
    assert site.get("/api/v1/services/app/snapshots/latest/tree?path=relative")[0] == 400
    assert site.get("/api/v1/services/app/snapshots?source=../x")[0] == 400


def test_tokens_decide_who_reads_and_acts(site: Site) -> None:
    status, headers, body = site.get("/api/v1/status", token=None)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert json.loads(body) == {"error": "authentication required"}
    wrong = "wrong-token-" + VIEWER_TOKEN[:6]
    status, _, body = site.get("/api/v1/status", token=wrong)
    assert status == 401 and json.loads(body) == {"error": "invalid credentials"}
    assert VIEWER_TOKEN[:6].encode() not in body and b"viewer" not in body
    assert site.get("/api/v1/status", token=OPERATOR_TOKEN)[0] == 200
    basic = base64.b64encode(f"{VIEWER_USER}:{VIEWER_PASSWORD}".encode()).decode()
    assert site.get("/api/v1/status", token=None, Authorization=f"Basic {basic}")[0] == 200
    wrong_basic = base64.b64encode(f"{VIEWER_USER}:nope".encode()).decode()
    assert site.get("/api/v1/status", token=None, Authorization=f"Basic {wrong_basic}")[0] == 401

    before = len(site.json("/api/v1/jobs?job=app/files%20backup&limit=100")["runs"])
    assert site.get("/api/v1/services/app/backup", token=None, method="POST")[0] == 401
    assert site.get("/api/v1/services/app/backup", token=VIEWER_TOKEN, method="POST")[0] == 403
    assert site.get("/api/v1/services/app/backup", token=wrong, method="POST")[0] == 401
    assert site.get("/api/v1/services/app/backup", method="GET")[0] == 405
    assert site.get("/api/v1/services/nope/backup", token=OPERATOR_TOKEN, method="POST")[0] == 404
    status, _, body = site.get("/api/v1/services/app/backup", token=OPERATOR_TOKEN, method="POST")
    assert status == 202
    assert json.loads(body) == {
        "message_type": "backup_requested",
        "service": "app",
        "jobs": ["app/files backup"],
    }
    runs = wait_for(
        "the requested backup",
        lambda: (
            (found := site.json("/api/v1/jobs?job=app/files%20backup&limit=100")["runs"])
            and len(found) == before + 1
            and found[0]["outcome"] == "success"
            and found
        ),
    )
    assert runs[0]["scheduled_for"] is None  # run on request, not on a slot
    # its snapshot can be browsed at once, though an older index was loaded moments ago
    site.json(f"/api/v1/services/app/snapshots/latest/tree?path={site.base / 'data'}")
    newest = site.json(f"/api/v1/services/app/snapshots/{runs[0]['snapshot']}/tree")
    assert newest["snapshot"]["id"] == runs[0]["snapshot"]

    # run drill now: the daemon's drill job, recorded in the history and the drill list
    drills = len(site.json("/api/v1/drills"))
    assert site.get("/api/v1/services/app/drill", token=VIEWER_TOKEN, method="POST")[0] == 403
    status, _, body = site.get("/api/v1/services/app/drill", token=OPERATOR_TOKEN, method="POST")
    assert status == 202 and json.loads(body)["jobs"] == ["drill app"]
    wait_for(
        "the requested drill",
        lambda: (
            [  # filtered here: ?job= for a job that never ran yet is an error
                r["outcome"]
                for r in site.json("/api/v1/jobs?limit=50")["runs"]
                if r["job"] == "drill app"
            ]
            == ["success"]
        ),
        timeout=120,
    )
    # the drill list is kept a few seconds: poll
    wait_for("the new drill report", lambda: len(site.json("/api/v1/drills")) == drills + 1)


def test_basic_auth_with_a_bcrypt_password_file(tmp_path: Path) -> None:
    """Checked in-process: the password file's hash formats and the role they give."""
    import base64

    import bcrypt
    from argon2 import PasswordHasher

    from safehold.dr.policy_http import HttpAuth
    from safehold.service.http.auth import load_authenticator

    viewers = tmp_path / "viewers"
    viewers.write_text(f"ann:{bcrypt.hashpw(b'ann-pw', bcrypt.gensalt(4)).decode()}\n")
    operators = tmp_path / "operators"
    operators.write_text(
        f"# admins\nbob:{PasswordHasher(time_cost=1, memory_cost=256).hash('bob-pw')}\n"
    )
    auth = load_authenticator(
        HttpAuth(viewer_password_file=str(viewers), operator_password_file=str(operators)),
        "127.0.0.1:1",
        tls=False,
    )

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    ann = auth.identify(basic("ann", "ann-pw"), None)
    assert ann is not None and ann.role == "viewer" and ann.ambient and not ann.may("operator")
    bob = auth.identify(basic("bob", "bob-pw"), None)
    assert bob is not None and bob.may("operator")
    assert auth.identify(basic("bob", "ann-pw"), None) is None
    assert auth.identify(None, None) is None  # a viewer file exists: reads need a login
    assert not auth.csrf_ok(bob, None) and auth.csrf_ok(bob, auth.csrf_token(bob))
    session = auth.new_session("operator")
    assert auth.session_role(session) == "operator"
    assert auth.session_role(session[:-1] + ("0" if session[-1] != "0" else "1")) is None


def test_nothing_served_reveals_a_secret(site: Site) -> None:
    """Every API document and page, as the operator sees them."""
    snap = site.json("/api/v1/services/app/snapshots")[-1]["id"]
    drill = site.json("/api/v1/drills")[-1]["id"]
    data = str(site.base / "data")
    paths = [
        "/api/v1/drills",
        f"/api/v1/drills/{drill}",
        f"/drills/{drill}",
        f"/drills/{drill}/report",
        "/api/v1/status",
        "/api/v1/services/app",
        "/api/v1/services/db",
        "/api/v1/services/db/exposure",
        "/api/v1/replicas",
        "/api/v1/jobs?limit=1000",
        "/api/v1/services/app/snapshots",
        f"/api/v1/services/app/snapshots/{snap}/tree?path={data}",
        f"/api/v1/services/app/snapshots/{snap}/file?path={data}/a.txt",
        "/api/v1/openapi.json",
        "/",
        "/jobs",
        "/services/app",
        "/services/db",
        "/services/app/snapshots",
        f"/services/app/snapshots/{snap}?path={data}",
        f"/services/app/snapshots/{snap}/file?path={data}/a.txt",
        "/login",
    ]
    seen = b""
    for path in paths:
        status, _, body = site.get(path, token=OPERATOR_TOKEN)
        assert status == 200, (path, body[:300])
        seen += body
    assert b"user=backup password=***" in seen  # the failed job's error is shown, masked
    for secret in site.secrets:
        assert secret.encode() not in seen, secret


def test_openapi_schema_describes_every_route(site: Site) -> None:
    schema = site.json("/api/v1/openapi.json", token=None)
    assert schema["openapi"].startswith("3.") and schema["info"]["title"] == "safehold"
    assert set(schema["paths"]) == {
        "/api/v1/status",
        "/api/v1/services/{service}",
        "/api/v1/services/{service}/exposure",
        "/api/v1/replicas",
        "/api/v1/jobs",
        "/api/v1/services/{service}/snapshots",
        "/api/v1/services/{service}/snapshots/{snapshot}/tree",
        "/api/v1/services/{service}/snapshots/{snapshot}/file",
        "/api/v1/services/{service}/backup",
        "/api/v1/services/{service}/drill",
        "/api/v1/drills",
        "/api/v1/drills/{report}",
        "/api/v1/standbys",
        "/api/v1/standbys/{service}",
    }
    jobs = schema["paths"]["/api/v1/jobs"]["get"]
    assert {p["name"] for p in jobs["parameters"]} == {"job", "outcome", "limit"}
    limit = next(p for p in jobs["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 10_000)
    assert set(schema["paths"]["/api/v1/services/{service}/backup"]) == {"post"}
    assert site.get("/docs", token=None)[0] == 404  # Swagger UI would load from a CDN


def test_a_login_only_redirects_within_the_site(site: Site) -> None:
    import http.client
    import urllib.parse

    def location(target: str, token: str) -> tuple[int, str | None]:
        connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
        body = urllib.parse.urlencode({"token": token, "next": target})
        connection.request(
            "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        answer = connection.getresponse()
        connection.close()
        return answer.status, answer.getheader("location")

    assert location("/jobs?limit=5", VIEWER_TOKEN) == (303, "/jobs?limit=5")
    for hostile in ("//evil.example", "/\\evil.example", "https://evil.example/", "jobs"):
        assert location(hostile, VIEWER_TOKEN) == (303, "/"), hostile
    assert location("/jobs", "wrong-token-wrong-token")[0] == 401
