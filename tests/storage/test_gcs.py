"""The GCS store's configuration and errors. There is no GCS emulator here (docs/stores/gcs.md):
nothing below talks to Google; what needs the real service is listed in the docs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument, StoreError
from safehold.storage import open_store
from safehold.storage.gcs import GCSLocation, GCSStore
from tests.conftest import CLI, PASSWORD

GOOGLE_VARS = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
)


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in GOOGLE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application default credentials
    return monkeypatch


def test_location() -> None:
    where = GCSLocation.parse("gs://backups/hosts/web1/?retries=3&timeout=60&connections=8")
    assert (where.bucket, where.prefix) == ("backups", "hosts/web1")
    assert (where.tuning.attempts, where.tuning.timeout, where.tuning.connections) == (4, 60, 8)
    assert GCSLocation.parse("gs://b").prefix == ""


@pytest.mark.parametrize("location", ["gs:///p", "gs://b/p?endpoint=x", "gs://b?connections=0"])
def test_bad_locations_are_refused(location: str) -> None:
    with pytest.raises(InvalidArgument):
        GCSLocation.parse(location)


def test_open_store_dispatches_gs_locations(no_credentials: pytest.MonkeyPatch) -> None:
    store = open_store("gs://b/p", connections=3)
    assert isinstance(store, GCSStore)
    assert (store.location, store.connections, store.where) == ("gs://b/p", 3, "gs://b/p")


def test_a_credentials_file_that_is_not_there(no_credentials: pytest.MonkeyPatch) -> None:
    no_credentials.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    with pytest.raises(StoreError, match="GOOGLE_APPLICATION_CREDENTIALS names /nonexistent"):
        GCSStore("gs://b/p")


def test_a_bad_service_account_key_is_one_clear_line(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')
    no_credentials.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    with pytest.raises(StoreError) as excinfo:
        GCSStore("gs://b/p?retries=0").get("config")  # obstore reads the file at once
    message = str(excinfo.value)
    assert "no usable Google Cloud credentials for gs://b/p" in message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "\n" not in message


def test_without_any_credentials_the_cli_says_so(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Off Google Cloud the metadata server is refused or unreachable: one line, quickly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "GOOGLE_"))}
    env.update(
        HOME=str(tmp_path),
        SAFEHOLD_REPOSITORY="gs://safehold-test-bucket/repo?timeout=3&retries=0",
        SAFEHOLD_PASSWORD=PASSWORD.decode(),
    )
    proc = CLI(tmp_path, env).run("snapshots", check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Google Cloud credentials" in stderr or "gs://safehold-test-bucket" in stderr
