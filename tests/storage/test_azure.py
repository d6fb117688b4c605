"""What only the Azure store does: locations, credentials, containers, a repository on Azurite.

The conformance suite (test_stores.py) and the fault tests (test_faults.py) also run on
AzureStore; these run against the same Azurite, each in a fresh container.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from safehold.errors import InvalidArgument, RepositoryMissing, StoreError
from safehold.repo.repository import Repository
from safehold.storage import open_store
from safehold.storage.azure import AZURITE_ACCOUNT, AZURITE_KEY, AzureLocation, AzureStore
from tests.archive.helpers import assert_same_tree, backup, inside, restore, write
from tests.conftest import CHEAP_KDF, CLI, PASSWORD
from tests.servers import AzureServer

AZURE_VARS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
)


def fresh_container() -> str:
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in AZURE_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---- locations ------------------------------------------------------------------------


def test_location_from_the_query_string(clean_env: pytest.MonkeyPatch) -> None:
    where = AzureLocation.parse(
        "az://backups/hosts/web1?account=acct&endpoint=http://127.0.0.1:10000/acct"
        "&timeout=30&retries=2&connections=6"
    )
    assert where == AzureLocation("backups", "hosts/web1", "acct", "http://127.0.0.1:10000/acct")
    assert (where.tuning.timeout, where.tuning.attempts, where.tuning.connections) == (30, 3, 6)
    assert where.key is None


def test_location_takes_the_standard_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_STORAGE_ACCOUNT", "fromenv")
    clean_env.setenv("AZURE_STORAGE_KEY", "a2V5")
    where = AzureLocation.parse("az://c/p")
    assert (where.account, where.key, where.endpoint) == ("fromenv", "a2V5", None)
    clean_env.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=https;AccountName=conn;AccountKey=Y29ubg==;"
        "BlobEndpoint=https://conn.blob.core.windows.net/;",
    )
    conn = AzureLocation.parse("az://c")
    assert (conn.account, conn.key, conn.endpoint) == (
        "conn",
        "Y29ubg==",
        "https://conn.blob.core.windows.net/",
    )
    # the query wins over the environment
    assert AzureLocation.parse("az://c?account=mine").account == "mine"


def test_development_storage_means_azurite(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    where = AzureLocation.parse("az://c/p")
    assert (where.account, where.key) == (AZURITE_ACCOUNT, AZURITE_KEY)
    assert where.endpoint == "http://127.0.0.1:10000/devstoreaccount1"


@pytest.mark.parametrize(
    "location",
    [
        "az:///prefix",
        "az://c/p?key=secret",  # keys never go in a location: it is printed and logged
        "az://c/p?timeout=0",
        "az://c/p?retries=x",
        "s3://b/p",
    ],
)
def test_bad_locations_are_refused(location: str) -> None:
    with pytest.raises(InvalidArgument):
        AzureLocation.parse(location)


def test_an_account_is_required(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgument, match="no Azure storage account"):
        AzureStore("az://c/p")


def test_open_store_dispatches_az_locations(
    azurite: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", azurite.key)
    store = open_store(azurite.location(fresh_container(), "repo"), connections=7)
    assert isinstance(store, AzureStore)
    assert store.connections == 7


# ---- containers and credentials -------------------------------------------------------


def test_create_makes_a_missing_container_with_environment_credentials(
    azurite: AzureServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string())
    container = fresh_container()
    store = AzureStore(f"az://{container}/some/prefix")  # account, key, endpoint: from env
    assert not store.exists()
    with pytest.raises(StoreError, match=f"container {container} does not exist"):
        store.get("config")
    store.create()
    assert store.exists()
    store.put("config", b"c")
    store.create()  # idempotent
    assert store.get("config") == b"c"
    assert [i.key for i in store.list("")] == ["config"]


def test_wrong_key_gives_a_clear_store_error(azurite: AzureServer) -> None:
    location = azurite.location(fresh_container(), "repo")
    good = AzureStore(location, account_key=azurite.key)
    Repository.init(good, PASSWORD, CHEAP_KDF)
    bad = AzureStore(location, account_key="d3Jvbmcga2V5IGZvciB0aGUgdGVzdHM=")
    with pytest.raises(StoreError, match=r"access denied .*AZURE_STORAGE_KEY"):
        bad.get("config")
    with pytest.raises(StoreError, match=r"access denied"):
        Repository.open(bad, PASSWORD)


# ---- a whole repository, in-process and by the CLI ------------------------------------


def test_backup_and_restore_round_trip_on_azure(azurite: AzureServer, tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(source / "a.txt", b"hello\n" * 1000)
    write(source / "sub" / "b.bin", os.urandom(700_000))
    write(source / "sub" / "empty", b"")
    location = azurite.location(fresh_container(), "repos/main")

    def store() -> AzureStore:
        return AzureStore(location, account_key=azurite.key)

    with pytest.raises(RepositoryMissing):
        Repository.open(store(), PASSWORD)
    repo = Repository.init(store(), PASSWORD, CHEAP_KDF, pack_size=256 * 1024)
    result = backup(repo, source)
    reopened = Repository.open(store(), PASSWORD)
    reopened.load_index()
    assert [s.id for s in reopened.list_snapshots()] == [result.snapshot.id]
    restore(reopened, result.snapshot.tree, tmp_path / "target")
    assert_same_tree(source, inside(tmp_path / "target", source))


def test_cli_on_azure(azurite: AzureServer, tmp_path: Path) -> None:
    """init creates the container; backup, restore and check --read-data work on az://."""
    source = tmp_path / "src"
    write(source / "x.bin", os.urandom(2_000_000))
    write(source / "d" / "y.txt", b"y" * 10_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "AZURE_"))}
    env.update(
        azurite.env(),
        SAFEHOLD_REPOSITORY=f"az://{fresh_container()}/repo",
        SAFEHOLD_PASSWORD=PASSWORD.decode(),
    )
    cli = CLI(tmp_path / "unused", env)
    cli.init()
    cli.run("--connections", "2", "backup", source)
    cli.run("restore", "latest", "--target", tmp_path / "restored")
    assert_same_tree(source, inside(tmp_path / "restored", source))
    cli.run("check", "--read-data")
