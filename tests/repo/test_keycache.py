"""The per-user key cache (repo/keycache.py): a second open skips the password's KDF, and
nothing it holds can open a repository that the password would not open."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

import safehold.repo.repository as repository_module
from safehold.errors import WrongPassword
from safehold.repo.crypto import MasterKey
from safehold.repo.keycache import KeyCache
from safehold.repo.keys import KeyFile
from safehold.repo.repository import Repository
from safehold.storage.local import LocalStore
from tests.conftest import CHEAP_KDF, CLI, PASSWORD
from tests.sources.pg_server import postgres_dir, runuser, write_safehold_wrapper

SEGMENT = "000000010000000000000001"


@pytest.fixture
def unwraps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the password derivations Repository.open runs (a spy: the real unwrap runs)."""
    calls: list[str] = []
    real = repository_module.unwrap

    def counting(key_file: KeyFile, password: bytes) -> MasterKey | None:
        calls.append(key_file.salt.hex())
        return real(key_file, password)

    monkeypatch.setattr(repository_module, "unwrap", counting)
    return calls


def _entries(cache: KeyCache) -> list[Path]:
    return sorted(cache.root.iterdir()) if cache.root.exists() else []


def test_second_open_skips_the_kdf_and_repositories_do_not_share(
    tmp_path: Path, unwraps: list[str]
) -> None:
    cache = KeyCache(tmp_path / "cache" / "keys")
    stores = [LocalStore(tmp_path / name) for name in ("a", "b")]
    made = [Repository.init(store, PASSWORD, CHEAP_KDF) for store in stores]
    first = Repository.open(stores[0], PASSWORD, cache)
    assert len(unwraps) == 1 and first.key == made[0].key
    entry = _entries(cache)[0]
    assert entry.stat().st_mode & 0o777 == 0o600 and cache.root.stat().st_mode & 0o777 == 0o700
    again = Repository.open(stores[0], PASSWORD, cache)
    assert len(unwraps) == 1, "the second open derived the key again"
    assert (again.key, again.config, again.key_id) == (first.key, first.config, first.key_id)
    other = Repository.open(stores[1], PASSWORD, cache)  # same password, another repository
    assert len(unwraps) == 2 and other.key == made[1].key != first.key
    assert len(_entries(cache)) == 2 and not cache.warnings


def test_a_wrong_or_revoked_password_fails_with_a_cache_present(tmp_path: Path) -> None:
    cache = KeyCache(tmp_path / "keys")
    store = LocalStore(tmp_path / "repo")
    Repository.init(store, PASSWORD, CHEAP_KDF)
    Repository.open(store, PASSWORD, cache)
    with pytest.raises(WrongPassword):
        Repository.open(store, b"not the password", cache)
    repo = Repository.open(store, PASSWORD, cache)
    repo.change_password(b"the new password", CHEAP_KDF)  # deletes the key file cached
    with pytest.raises(WrongPassword):
        Repository.open(store, PASSWORD, cache)
    assert _entries(cache) == [] and not cache.warnings  # the stale entry is dropped
    assert Repository.open(store, b"the new password", cache).key == repo.key


def test_tampered_open_or_foreign_entries_are_ignored(tmp_path: Path, unwraps: list[str]) -> None:
    cache = KeyCache(tmp_path / "keys")
    store = LocalStore(tmp_path / "repo")
    Repository.init(store, PASSWORD, CHEAP_KDF)
    Repository.open(store, PASSWORD, cache)
    entry = _entries(cache)[0]
    raw = bytearray(entry.read_bytes())
    at = raw.index(b'"data": "') + 20
    raw[at] = ord("A") if raw[at] != ord("A") else ord("B")
    entry.write_bytes(bytes(raw))
    Repository.open(store, PASSWORD, cache)  # derived again, and the entry written anew
    assert len(unwraps) == 2 and not cache.warnings
    Repository.open(store, PASSWORD, cache)
    assert len(unwraps) == 2
    entry.chmod(0o644)
    Repository.open(store, PASSWORD, cache)
    assert len(unwraps) == 3 and cache.warnings == [
        f"key cache {entry} is open to other users (mode 644); ignored"
    ]
    if os.geteuid() == 0:
        entry.chmod(0o600)
        os.chown(entry, 65534, 65534)
        cache.warnings.clear()
        Repository.open(store, PASSWORD, cache)
        assert len(unwraps) == 4
        assert cache.warnings == [
            f"key cache {entry} is owned by uid 65534, not by this user (0); ignored"
        ]


def _pgdata(tmp_path: Path) -> Path:
    pgdata = tmp_path / "pgdata"
    (pgdata / "global").mkdir(parents=True)
    (pgdata / "global" / "pg_control").write_bytes(struct.pack("<Q", 7712345678901234567))
    return pgdata


def test_wal_fetch_uses_the_cache_only_with_a_password_file(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    pgdata = _pgdata(tmp_path)
    password = tmp_path / "password"
    password.write_bytes(PASSWORD)
    keys = tmp_path / "cache" / "safehold" / "keys"
    cli.env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    fetch = ["pg", "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG", "--pgdata", pgdata]
    cli.run(*fetch, check=False)  # SAFEHOLD_PASSWORD: no cache by default
    assert not keys.exists()
    cli.env["SAFEHOLD_KEY_CACHE"] = "off"
    cli.run("--password-file", password, *fetch, check=False)
    assert not keys.exists()
    del cli.env["SAFEHOLD_KEY_CACHE"]
    cli.run("--password-file", password, "--no-key-cache", *fetch, check=False)
    assert not keys.exists()
    missing = cli.run("--password-file", password, *fetch, check=False)
    assert missing.returncode == 4 and len(list(keys.iterdir())) == 1
    password.write_bytes(b"wrong")
    wrong = cli.run("--password-file", password, *fetch, check=False)
    assert wrong.returncode == 12, wrong
    line = wrong.stderr.decode()
    assert line.count("\n") == 1 and line.startswith(
        f"safehold: Wrong password from --password-file {password}"
    ), line


def test_wal_fetch_as_postgres_caches_in_its_own_home(cli: CLI) -> None:
    """As PostgreSQL runs restore_command: the postgres user, its cache in its own directory
    (runuser sets HOME to postgres's home: XDG_CACHE_HOME points into the test's)."""
    with postgres_dir("safehold-keycache-") as home:
        wrapper = write_safehold_wrapper(home / "safehold")
        repo, password = home / "repo", home / "password"
        password.write_bytes(PASSWORD)
        password.chmod(0o600)
        cli.env["SAFEHOLD_REPOSITORY"] = str(repo)
        cli.init()
        subprocess.run(["chown", "-R", "postgres:postgres", repo, password], check=True)
        env = {k: v for k, v in cli.env.items() if k != "SAFEHOLD_PASSWORD"}
        env.update(XDG_CACHE_HOME=str(home / "cache"), SAFEHOLD_PASSWORD_FILE=str(password))
        pgdata = _pgdata(home)
        subprocess.run(["chown", "-R", "postgres:postgres", pgdata], check=True)
        fetch = [wrapper, "pg", "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG", "--pgdata", pgdata]
        for _ in range(2):
            proc = runuser(*fetch, check=False, env=env)
            assert proc.returncode == 4 and b"not in the repository" in proc.stderr, proc
        keys = home / "cache" / "safehold" / "keys"
        [entry] = keys.iterdir()
        assert entry.stat().st_uid == keys.stat().st_uid == _uid("postgres")
        assert entry.stat().st_mode & 0o777 == 0o600


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid
