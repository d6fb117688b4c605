"""Stores behind a proxy that fails, resets, stalls or loses replies on purpose.

The proxy (faultproxy.py) sits between safehold and a real server (SeaweedFS, Azurite).
What must hold: transient failures are retried and never change what is stored; a
create-if-absent whose reply was lost is not mistaken for someone else's object; when
retries run out the error is one line naming the object and the attempts; a backup and
restore through a flaky network succeed, and ``check --read-data`` finds nothing wrong.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from safehold.errors import AlreadyExists, StoreRetriesExhausted
from safehold.storage.azure import AzureStore
from safehold.storage.cloud import ObstoreStore
from safehold.storage.s3 import S3Store
from tests.conftest import CLI, PASSWORD
from tests.servers import AzureServer, S3Server
from tests.storage.faultproxy import FaultPlan, FaultProxy, fault_proxy

MIXED = {"503": 0.08, "429": 0.04, "500": 0.04, "reset": 0.06, "lost-reply": 0.06}

Opener = Callable[[str, str], ObstoreStore]  # (endpoint, options) -> a store on one place


@pytest.fixture(params=["s3", "azure"])
def behind_proxy(request: pytest.FixtureRequest) -> Iterator[tuple[Opener, str]]:
    """Opens a store over one fresh place, through a given endpoint; yields (opener, upstream)."""
    name = f"f-{uuid.uuid4().hex}"
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("seaweedfs")

        def open_s3(endpoint: str, options: str) -> ObstoreStore:
            location = S3Server(endpoint, s3.access_key, s3.secret_key).location(name, "repo")
            return S3Store(
                f"{location}&{options}".rstrip("&"),
                access_key_id=s3.access_key,
                secret_access_key=s3.secret_key,
            )

        yield open_s3, s3.endpoint
    else:
        az: AzureServer = request.getfixturevalue("azurite")
        base = az.endpoint.rsplit("/", 1)[0]

        def open_az(endpoint: str, options: str) -> ObstoreStore:
            location = AzureServer(f"{endpoint}/{az.account}").location(name, "repo")
            return AzureStore(f"{location}&{options}".rstrip("&"), account_key=az.key)

        yield open_az, base


@contextmanager
def flaky(upstream: str, **plan_args: object) -> Iterator[FaultProxy]:
    with fault_proxy(upstream, FaultPlan(**plan_args)) as proxy:  # type: ignore[arg-type]
        yield proxy


def test_every_operation_survives_a_flaky_network(behind_proxy: tuple[Opener, str]) -> None:
    opener, upstream = behind_proxy
    direct = opener(upstream, "")
    direct.create()
    objects = {f"data/{n:02x}/obj{n}": os.urandom(1000 + 997 * n) for n in range(30)}
    with flaky(upstream, rates=MIXED, seed=3) as proxy:
        store = opener(proxy.endpoint, "retries=8")
        for key, data in objects.items():
            store.put(key, data)
        for n in range(10):
            store.put(f"keys/k{n}", b"key %d" % n, if_absent=True)
        for key, data in objects.items():
            assert store.get(key) == data
            assert store.get(key, (10, 100)) == data[10:110]
            assert store.stat(key).size == len(data)
        assert sorted(i.key for i in store.list("data/")) == sorted(objects)
        for key in list(objects)[:5]:
            store.delete(key)
        injected = dict(proxy.plan.injected)
    assert set(injected) == set(MIXED), injected  # every kind of fault happened
    assert sum(injected.values()) >= 20
    # what is stored is exactly what was meant, seen without the proxy
    assert sorted(i.key for i in direct.list("data/")) == sorted(list(objects)[5:])
    for key in list(objects)[5:]:
        assert direct.get(key) == objects[key]
    for n in range(10):
        assert direct.get(f"keys/k{n}") == b"key %d" % n


def test_a_create_whose_reply_was_lost_succeeds(behind_proxy: tuple[Opener, str]) -> None:
    """The If-None-Match race: the first PUT took effect, its reply became a 503, the retry
    got 412/409. The object holds our bytes, so the create did succeed."""
    opener, upstream = behind_proxy
    opener(upstream, "").create()
    with flaky(upstream) as proxy:
        store = opener(proxy.endpoint, "")
        proxy.plan.once("lost-reply", "PUT", "keys/mine")
        store.put("keys/mine", b"my key file", if_absent=True)
        assert proxy.plan.injected["lost-reply"] == 1
        assert store.get("keys/mine") == b"my key file"
        # and a second create of the same name is still refused
        with pytest.raises(AlreadyExists):
            store.put("keys/mine", b"my key file", if_absent=True)


def test_a_retried_create_still_refuses_someone_elses_object(
    behind_proxy: tuple[Opener, str],
) -> None:
    opener, upstream = behind_proxy
    direct = opener(upstream, "")
    direct.create()
    direct.put("config", b"the other writer's config", if_absent=True)
    with flaky(upstream) as proxy:
        store = opener(proxy.endpoint, "")
        proxy.plan.once("503", "PUT", "config")  # first try fails, the retry meets 412
        with pytest.raises(AlreadyExists):
            store.put("config", b"my config", if_absent=True)
        assert proxy.plan.injected["503"] == 1
    assert direct.get("config") == b"the other writer's config"


def test_a_stalled_request_times_out_and_is_retried(behind_proxy: tuple[Opener, str]) -> None:
    opener, upstream = behind_proxy
    opener(upstream, "").create()
    with flaky(upstream, stall_seconds=4) as proxy:
        store = opener(proxy.endpoint, "timeout=1")
        proxy.plan.once("stall", "PUT", "data/00/slow")  # obstore itself retries no PUT timeout
        store.put("data/00/slow", b"x" * 100_000)
        proxy.plan.once("stall", "GET", "data/00/slow")
        assert store.get("data/00/slow") == b"x" * 100_000
        assert proxy.plan.injected["stall"] == 2


def test_when_retries_run_out_the_error_names_the_object_and_attempts(
    behind_proxy: tuple[Opener, str],
) -> None:
    opener, upstream = behind_proxy
    opener(upstream, "").create()
    with flaky(upstream, rates={"503": 1.0}) as proxy:
        store = opener(proxy.endpoint, "retries=2")
        with pytest.raises(StoreRetriesExhausted) as excinfo:
            store.put("data/ab/abcdef", b"pack")
        assert proxy.plan.injected["503"] == 3
    message = str(excinfo.value)
    assert "\n" not in message
    assert "gave up on write 'data/ab/abcdef' after 3 attempts" in message
    assert "SlowDown" in message or "503" in message


# ---- a whole backup and restore through the flaky proxy, by the CLI ----------------


def s3_cli(server: S3Server, location: str, tmp_path: Path) -> CLI:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOLD_", "AWS_"))}
    env.update(server.env(), SAFEHOLD_REPOSITORY=location, SAFEHOLD_PASSWORD=PASSWORD.decode())
    return CLI(tmp_path / "unused", env)


def make_source(root: Path) -> Path:
    rng = __import__("random").Random(5)
    for n in range(40):
        path = root / f"d{n % 4}" / f"f{n}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 300_000)))
    (root / "big.bin").write_bytes(rng.randbytes(3_000_000))
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_backup_and_restore_through_a_flaky_network(seaweedfs: S3Server, tmp_path: Path) -> None:
    bucket = f"f-{uuid.uuid4().hex}"
    direct = s3_cli(seaweedfs, seaweedfs.location(bucket, "repo"), tmp_path)
    direct.run("init", "--kdf-memory", "256", "--kdf-iterations", "1")
    source = make_source(tmp_path / "src")
    with flaky(seaweedfs.endpoint, rates=MIXED, seed=11) as proxy:
        location = S3Server(proxy.endpoint, "", "").location(bucket, "repo") + "&retries=8"
        through = s3_cli(seaweedfs, location, tmp_path)
        through.run("--connections", "3", "backup", source)
        through.run("restore", "latest", "--target", tmp_path / "restored")
        injected = sum(proxy.plan.injected.values())
    assert injected >= 5
    assert tree(tmp_path / "restored" / source.relative_to("/")) == tree(source)
    direct.run("check", "--read-data")


def test_a_backup_that_cannot_get_through_fails_in_one_line(
    seaweedfs: S3Server, tmp_path: Path
) -> None:
    bucket = f"f-{uuid.uuid4().hex}"
    direct = s3_cli(seaweedfs, seaweedfs.location(bucket, "repo"), tmp_path)
    direct.run("init", "--kdf-memory", "256", "--kdf-iterations", "1")
    source = make_source(tmp_path / "src")
    direct.run("backup", source / "d0")
    plan = FaultPlan()
    # packs fail every time; everything else goes through
    plan.rules.append(lambda r: "503" if r.method == "PUT" and "/data/" in r.path else None)
    with fault_proxy(seaweedfs.endpoint, plan) as proxy:
        location = S3Server(proxy.endpoint, "", "").location(bucket, "repo") + "&retries=2"
        proc = s3_cli(seaweedfs, location, tmp_path).run("backup", source, check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "gave up on write 'data/" in lines[0]
    assert "after 3 attempts" in lines[0]
    # the repository is as good as before: the first snapshot checks and restores
    assert len(direct.run("--json", "snapshots").stdout) > 2
    direct.run("check", "--read-data")
    direct.run("restore", "latest", "--target", tmp_path / "r")
    assert tree(tmp_path / "r" / (source / "d0").relative_to("/")) == tree(source / "d0")
