"""A hot standby watched by ``safehold status`` and the daemon's metrics. Patroni's REST
API is played by tests/standby/patroni_stub.py (tiny HTTP servers on 127.0.0.1 answering
``/patroni`` with Patroni 4's documents): a replica that stopped streaming cannot be caused
quickly with a real cluster, which tests/standby/test_failover.py runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safehold.dr.load import load_policy
from safehold.dr.status import evaluate
from safehold.service.metrics import _standby_metrics
from tests.service.daemon_helpers import SAFEHOLD, clean_env
from tests.service.dashboard_helpers import make_site, start_serve, wait_for
from tests.standby.patroni_stub import WAL, PatroniStub, patroni_stub, primary_doc, replica_doc


@pytest.fixture
def stub() -> Iterator[PatroniStub]:
    with patroni_stub(["pg1", "pg2"]) as running:
        running.docs["pg1"] = primary_doc("db", "pg1", ["pg2"])
        running.docs["pg2"] = replica_doc("db", "pg2")
        yield running


def write_config(tmp_path: Path, stub: PatroniStub) -> Path:
    nodes = "".join(
        f'[[services.db.standby.nodes]]\nname = "{name}"\nhost = "127.0.0.1"\n'
        f'port = {5432 + i}\nrest_port = {stub.port(name)}\npgdata = "/srv/{name}"\n'
        for i, name in enumerate(["pg1", "pg2"])
    )
    config = tmp_path / "safehold.toml"
    config.write_text(
        f'[repositories.main]\nlocation = "{tmp_path / "repo"}"\npassword_env = "PW"\n'
        '[services.db]\n[[services.db.sources]]\nname = "pg"\nkind = "postgres"\n'
        'options = { pgdata = "/srv/pg1" }\n'
        '[services.db.standby]\netcd = ["127.0.0.1:2379"]\nwrite_port = 5000\n'
        f"{nodes}"
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nmetrics = "off"\n'
    )
    return config


def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAFEHOLD, *args, "status", "-c", str(config), "--no-replicas"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


def test_status_shows_a_cluster_without_a_healthy_standby_and_exits_5(
    tmp_path: Path, stub: PatroniStub
) -> None:
    config = write_config(tmp_path, stub)
    healthy = status(config)
    assert "  standby: primary pg1, streaming to pg2" in healthy.stdout, healthy.stdout
    stub.docs["pg1"] = primary_doc("db", "pg1", [])  # pg2 no longer in pg_stat_replication
    broken = status(config)
    assert broken.returncode == 5, broken.stdout + broken.stderr
    assert "  standby: PROBLEM: no healthy standby: the primary runs alone" in broken.stdout
    assert "  standby: PROBLEM: pg2 is not streaming from the primary" in broken.stdout
    (service,) = json.loads(status(config, "--json").stdout)["services"]
    assert service["standby"]["healthy"] is False
    assert service["standby"]["problems"][-1] == "no healthy standby: the primary runs alone"


def test_the_metrics_give_the_primary_the_streaming_replicas_and_their_lag(
    tmp_path: Path, stub: PatroniStub
) -> None:
    policy = load_policy(str(write_config(tmp_path, stub)))
    stub.docs["pg2"] = replica_doc("db", "pg2", replayed=WAL - 4096)

    def samples() -> dict[tuple[str, str], float]:
        computed = evaluate(policy, datetime.now(UTC), replicas=False)
        return {
            (s.name, s.labels.get("node", "")): s.value
            for metric in _standby_metrics(computed)
            for s in metric.samples
        }

    lagging = samples()
    assert lagging[("safehold_standby_primary_up", "")] == 1
    assert lagging[("safehold_standby_healthy_replicas", "")] == 1
    assert lagging[("safehold_standby_replica_lag_bytes", "pg2")] == 4096
    assert lagging[("safehold_standby_replica_lag_seconds", "pg2")] > 0
    assert lagging[("safehold_standby_node_up", "pg1")] == 1
    stub.docs["pg1"]["role"] = "replica"  # no node says it is primary
    leaderless = samples()
    assert leaderless[("safehold_standby_primary_up", "")] == 0
    assert leaderless[("safehold_standby_healthy_replicas", "")] == 0
    assert leaderless[("safehold_standby_problems", "")] >= 1


def test_the_dashboard_serves_the_standby_status_the_cli_gives_and_shows_it(
    tmp_path: Path, stub: PatroniStub
) -> None:
    site = make_site(tmp_path / "site")
    policy = write_config(tmp_path, stub).read_text()
    standby = policy[policy.index("[services.db.standby]") : policy.index("[daemon]")]
    site.config.write_text(site.config.read_text() + standby)
    start_serve(site)

    def page_of() -> str:
        return bytes(site.get("/services/db")[2]).decode()

    def overview() -> str:
        return bytes(site.get("/")[2]).decode()

    try:
        site.wait_up()
        cli = site.cli_json("standby", "status", "db")
        assert cli["primary"] == "pg1" and cli["healthy"] is True
        assert site.json("/api/v1/standbys/db") == cli
        assert site.json("/api/v1/standbys") == [cli]
        assert site.get("/api/v1/standbys/app")[0] == 404  # app has no standby table
        assert 'id="standby" data-healthy="true"' in page_of() and 'data-node="pg2"' in page_of()
        assert 'data-standby="healthy"' in overview()
        stub.docs["pg1"] = primary_doc("db", "pg1", [])  # read again within status_interval
        wait_for("the page to show pg2 not streaming", lambda: "no healthy standby" in page_of())
        assert 'data-healthy="false"' in page_of() and "no healthy standby" in overview()
    finally:
        site.stop()
