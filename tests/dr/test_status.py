"""dr.status.evaluate on real repositories: backups made as the daemon makes them.

Every backup runs the argv of ``dr.jobs.job_commands`` through ``python -m safehold`` with
the job's environment, so the source tags are the daemon's own. Time passing is shown by
evaluating at a later ``now``; the CLI tests (tests/e2e/test_status_cli.py) let it pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safehold.dr.jobs import job_commands
from safehold.dr.load import load_policy
from safehold.dr.policy import Policy
from safehold.dr.schedule import JobId, next_runs
from safehold.dr.status import ProtectionStatus, SourceStatus, evaluate
from safehold.repo.repository import Repository
from safehold.service.history import JobHistory
from safehold.service.paths import HISTORY_FILE
from safehold.storage import LocalStore
from tests.conftest import CHEAP_KDF, PASSWORD, SAFEHOLD
from tests.servers import S3Server
from tests.sources.pg_fixtures import PgEnv, pg_env  # noqa: F401  (module-scoped cluster fixture)
from tests.sources.pg_server import PgCluster

FILES_JOB = JobId("backup", "app/files", "backup")
POLICY = """
[repositories.main]
location = "{repo}"
password_file = "{password}"

[[repositories.main.replicas]]
location = "{replica}"
schedule = "*/30 * * * *"

[services.app]
objectives.rpo = "{rpo}"

[[services.app.sources]]
name = "files"
kind = "files"
options.paths = ["{data}"]
schedules.backup = "17 * * * *"

[daemon]
state_dir = "{state}"
"""


@dataclass
class Setup:
    """A repository, its password file, data to back up and a policy file, in tmp_path."""

    base: Path
    config: Path

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def replica(self) -> Path:
        return self.base / "replica"

    @property
    def history_path(self) -> Path:
        return self.base / "state" / HISTORY_FILE

    @property
    def policy(self) -> Policy:
        return load_policy(self.config)

    def run_job(self, job: JobId) -> list[Any]:
        """The job's commands, as the daemon runs them; their JSON summaries."""
        import json

        docs = []
        for command in job_commands(self.policy, job):
            environ = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")}
            proc = subprocess.run(
                [*SAFEHOLD, *command.argv],
                env={**environ, **command.env},
                capture_output=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr.decode(errors="replace")
            docs.append(json.loads(proc.stdout.splitlines()[-1]))
        return docs

    def backup(self) -> str:
        """One backup of app/files; its snapshot id."""
        (self.base / "data" / "file").write_text(f"changed at {time.time_ns()}\n")
        return str(self.run_job(FILES_JOB)[-1]["snapshot_id"])

    def writable_history(self) -> JobHistory:
        return JobHistory(self.history_path)


def make_setup(base: Path, rpo: str = "1h") -> Setup:
    Repository.init(LocalStore(base / "repo"), PASSWORD, CHEAP_KDF, pack_size=1 << 20)
    (base / "password").write_bytes(PASSWORD)
    (base / "data").mkdir()
    config = base / "safehold.toml"
    config.write_text(
        POLICY.format(
            repo=base / "repo",
            password=base / "password",
            replica=base / "replica",
            rpo=rpo,
            data=base / "data",
            state=base / "state",
        )
    )
    return Setup(base, config)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


def only_source(status: ProtectionStatus) -> SourceStatus:
    (service,) = status.services
    (source,) = service.sources
    return source


def test_never_backed_up_is_outside_and_next_run_is_the_schedules(setup: Setup) -> None:
    now = datetime.now(UTC)
    status = evaluate(setup.policy, now)
    source = only_source(status)
    assert (source.service, source.source, source.kind) == ("app", "files", "files")
    assert source.recovery_point is None and source.exposure is None
    assert not source.within_objective and not status.within_objectives
    assert source.next_run == next_runs(setup.policy, now, 1)[FILES_JOB][0]
    assert source.problem is None
    doc = status.to_dict()
    assert doc["message_type"] == "status" and doc["within_objectives"] is False
    assert doc["services"][0]["exposure"] is None
    assert doc["services"][0]["sources"][0]["next_run"] == source.next_run.isoformat()


def test_a_backup_is_within_its_rpo_until_the_rpo_has_passed(setup: Setup) -> None:
    snapshot_id = setup.backup()
    now = datetime.now(UTC)
    source = only_source(evaluate(setup.policy, now, replicas=False))
    assert source.last_snapshot == snapshot_id
    assert source.recovery_point == source.last_backup and source.recovery_point_from == "snapshot"
    assert source.recovery_point is not None and now - source.recovery_point < timedelta(minutes=1)
    assert source.within_objective and source.exposure == now - source.recovery_point

    later = source.recovery_point + timedelta(hours=1, seconds=1)  # the rpo is 1h
    status = evaluate(setup.policy, later, replicas=False)
    assert not only_source(status).within_objective and not status.within_objectives
    doc = only_source(status).to_dict()
    assert doc["exposure"] == "1h1s" and doc["exposure_seconds"] == 3601.0
    assert doc["rpo_seconds"] == 3600.0 and doc["within_objective"] is False


def test_job_history_gives_the_last_outcome_and_since_when_it_fails(setup: Setup) -> None:
    setup.backup()
    history = setup.writable_history()
    t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    ok = history.start(str(FILES_JOB), "backup", "app/files", "backup", t0, now=t0)
    history.finish(ok, "success", now=t0 + timedelta(seconds=5))
    for minutes in (60, 120):
        started = t0 + timedelta(minutes=minutes)
        run = history.start(str(FILES_JOB), "backup", "app/files", "backup", started, now=started)
        history.finish(run, "failed", error=f"boom {minutes}", now=started + timedelta(seconds=2))
    source = only_source(evaluate(setup.policy, datetime.now(UTC), history, replicas=False))
    assert source.last_job == "app/files backup" and source.last_job_outcome == "failed"
    assert source.last_job_ended == t0 + timedelta(minutes=120, seconds=2)
    assert source.failing_since == t0 + timedelta(minutes=60)
    assert source.last_error == "boom 120"
    assert source.within_objective  # a failing job alone is not a breach: the exposure is


def test_an_unreadable_repository_keeps_the_last_known_recovery_point(setup: Setup) -> None:
    setup.backup()
    history = setup.writable_history()
    known = only_source(evaluate(setup.policy, datetime.now(UTC), history, replicas=False))
    assert known.recovery_point is not None
    shutil.move(setup.repo, setup.base / "repo-away")  # the store is gone

    soon = known.recovery_point + timedelta(minutes=10)
    source = only_source(evaluate(setup.policy, soon, history))
    assert source.problem is not None and source.problem.startswith("repository main unreadable")
    assert "\n" not in source.problem
    assert source.recovery_point == known.recovery_point and source.recovery_point_last_known
    assert source.last_snapshot == known.last_snapshot
    assert source.within_objective and source.exposure == timedelta(minutes=10)

    breach = evaluate(setup.policy, known.recovery_point + timedelta(hours=2), history)
    assert not only_source(breach).within_objective and not breach.within_objectives
    assert breach.replicas[0].problem is not None  # the replica cannot be compared either

    without_history = only_source(evaluate(setup.policy, soon))
    assert without_history.recovery_point is None and not without_history.within_objective


def test_a_wrong_password_is_a_problem_not_an_exception(setup: Setup) -> None:
    setup.backup()
    (setup.base / "password").write_text("not the password\n")
    source = only_source(evaluate(setup.policy, datetime.now(UTC)))
    assert source.problem is not None and "wrong password" in source.problem.lower()
    assert not source.within_objective


def test_replica_lag_and_replica_problems(setup: Setup) -> None:
    first = setup.backup()
    status = evaluate(setup.policy, datetime.now(UTC))
    (replica,) = status.replicas
    assert replica.problem is not None and "does not exist" in replica.problem
    assert replica.lag is None and replica.newest_replica is None

    replicate = JobId("replicate", "main", str(setup.replica))
    setup.run_job(replicate)
    (replica,) = evaluate(setup.policy, datetime.now(UTC)).replicas
    assert replica.problem is None and replica.lag == timedelta(0)
    assert replica.missing_objects == 0

    time.sleep(0.05)
    second = setup.backup()
    now = datetime.now(UTC) + timedelta(minutes=5)
    (replica,) = evaluate(setup.policy, now).replicas
    snaps = {
        s.id: s.datetime for s in Repository.open(LocalStore(setup.repo), PASSWORD).list_snapshots()
    }
    assert replica.newest_replica == snaps[first] and replica.newest_primary == snaps[second]
    # behind since the second snapshot, which it cannot restore
    assert replica.lag == now - snaps[second] > timedelta(minutes=5)
    assert replica.missing_objects is not None and replica.missing_objects > 0
    assert replica.to_dict()["lag_seconds"] == round(replica.lag.total_seconds(), 3)
    assert {"packs", "index", "snapshots"} <= set(replica.missing)
    assert replica.behind is not None and second[:8] in replica.behind["reason"]

    shutil.rmtree(setup.replica)  # a different repository where the replica should be
    Repository.init(LocalStore(setup.replica), PASSWORD, CHEAP_KDF)
    (replica,) = evaluate(setup.policy, datetime.now(UTC)).replicas
    assert replica.problem is not None and replica.problem.startswith("replica unreadable")
    assert evaluate(setup.policy, datetime.now(UTC), replicas=False).replicas == []


# -- PostgreSQL with WAL archived by archive_command ------------------------------------

PG_POLICY = """
[repositories.main]
location = "{repo}"
password_file = "{password}"

[[services.db.sources]]
name = "pg"
kind = "postgres"
options.pgdata = "{pgdata}"
options.host = "{host}"
options.port = {port}
options.user = "postgres"
schedules.logs = "continuous"

[daemon]
state_dir = "{state}"
"""


def pg_policy(env: PgEnv, cluster: PgCluster, base: Path) -> str:
    return PG_POLICY.format(
        repo=env.repo,
        password=env.password_file,
        pgdata=cluster.pgdata,
        host=cluster.sockdir,
        port=cluster.port,
        state=base / "state",
    )


def test_postgres_recovery_point_is_the_newest_archived_wal(
    pg_env: PgEnv,  # noqa: F811
    tmp_path: Path,
) -> None:
    cluster = pg_env.cluster("status")
    config = tmp_path / "safehold.toml"
    config.write_text(pg_policy(pg_env, cluster, tmp_path))
    policy = load_policy(config)
    setup = Setup(tmp_path, config)
    setup.run_job(JobId("backup", "db/pg", "full"))
    time.sleep(1.1)
    cluster.sql("CREATE TABLE t AS SELECT 1 AS x")
    committed = datetime.now(UTC)
    cluster.wait_archived()

    history = setup.writable_history()
    started = time.monotonic()
    status = evaluate(policy, datetime.now(UTC), history)
    first_seconds = time.monotonic() - started
    source = only_source(status)
    assert source.kind == "postgres" and source.recovery_point_from == "archived WAL"
    assert source.last_backup is not None and source.recovery_point is not None
    assert source.recovery_point > source.last_backup + timedelta(seconds=1)
    assert abs(source.recovery_point - committed) < timedelta(seconds=1)
    assert source.within_objective  # the default rpo, 30m
    # the point shown restores, to the microsecond (it is the newest archived commit)
    restored, _ = pg_env.restore("status_point", "--to-time", source.recovery_point.isoformat())
    assert restored.sql("SELECT x FROM t") == [(1,)]
    restored.stop()

    started = time.monotonic()
    again = only_source(evaluate(policy, datetime.now(UTC), history))
    cached_seconds = time.monotonic() - started
    assert again.recovery_point == source.recovery_point
    print(f"evaluate: {first_seconds:.3f} s, then {cached_seconds:.3f} s with the WAL time cached")

    # a second node pushing other bytes under the newest archived name is refused; while
    # nothing newer is archived, archiving is stuck there and status says so
    [(newest,)] = cluster.sql("SELECT last_archived_wal FROM pg_stat_archiver")
    rogue = tmp_path / "rogue"
    (rogue / "global").mkdir(parents=True)
    shutil.copy(cluster.pgdata / "global" / "pg_control", rogue / "global")
    (rogue / "pg_wal").mkdir()
    (rogue / "pg_wal" / newest).write_bytes(os.urandom(1024))
    refused = pg_env.run("pg", "wal-push", f"pg_wal/{newest}", "--pgdata", rogue, check=False)
    assert refused.returncode == 2
    stuck = only_source(evaluate(policy, datetime.now(UTC), history))
    assert stuck.problem is not None
    assert stuck.problem.startswith(f"WAL archiving is stuck on {newest}: a push of it was refused")
    # production archives past it: not production that is stuck (a WAL record first, or the
    # switch is a no-op naming the newest archived segment and nothing newer is archived)
    cluster.sql("SELECT pg_create_restore_point('past the refused segment')")
    cluster.wait_archived()
    assert only_source(evaluate(policy, datetime.now(UTC), history)).problem is None


def test_replica_lag_is_the_age_of_its_newest_restorable_commit(
    pg_env: PgEnv,  # noqa: F811
    seaweedfs: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica on SeaweedFS holds every snapshot but lacks one WAL segment: it cannot
    restore past the commit before the gap, so its lag is that commit's age (measured
    with PostgreSQL's own commit timestamps), and the segment is named as missing WAL."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"lag-{time.monotonic_ns()}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=bucket)
    replica = seaweedfs.location(bucket, "replica")
    cluster = pg_env.cluster("lag")
    config = tmp_path / "safehold.toml"
    config.write_text(
        pg_policy(pg_env, cluster, tmp_path).replace(
            "[[services.db.sources]]",
            f'[[repositories.main.replicas]]\nlocation = "{replica}"\n\n[[services.db.sources]]',
        )
    )
    setup = Setup(tmp_path, config)
    setup.run_job(JobId("backup", "db/pg", "full"))
    system_id = str(cluster.sql("SELECT system_identifier FROM pg_control_system()")[0][0])

    def commit(n: int) -> tuple[datetime, str]:
        """One row committed, its segment archived: (its commit time, the segment)."""
        cluster.sql("CREATE TABLE IF NOT EXISTS lag (n int)")
        cluster.sql("INSERT INTO lag VALUES (%s)", n)
        at = cluster.sql("SELECT pg_xact_commit_timestamp(xmin) FROM lag WHERE n = %s", n)[0][0]
        segment = cluster.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
        cluster.wait_archived()
        return at, segment

    restorable, _ = commit(1)
    time.sleep(5)  # later commits are seconds newer: a lag counted from them would show
    _, lost = commit(2)
    commit(3)
    setup.run_job(JobId("replicate", "main", replica))
    client.delete_object(Bucket=bucket, Key=f"replica/wal/{system_id}/{lost}")

    now = datetime.now(UTC)
    started = time.monotonic()
    (status,) = evaluate(setup.policy, now).replicas
    seconds = time.monotonic() - started
    assert status.lag is not None and status.problem is None
    expected = now - restorable
    print(f"lag {status.lag.total_seconds():.1f} s, age of the newest restorable commit {expected}")
    print(f"evaluate with the replica: {seconds:.2f} s (WAL read on both sides)")
    assert abs(status.lag - expected) < timedelta(seconds=2)
    assert status.missing == {"WAL": 1}
    assert status.behind is not None and "WAL of PostgreSQL cluster" in status.behind["reason"]
    (db,) = [db for db in status.logs if db["name"] == system_id]  # the module's repository
    assert str(db["replica_newest"]) < str(db["primary_newest"])  # holds other clusters too

    proc = subprocess.run(
        [*SAFEHOLD, *pg_env.safehold_args, "--json", "replicate", "--to", replica, "--status"],
        capture_output=True,
        check=True,
    )
    doc = json.loads(proc.stdout)
    assert doc["missing"]["wal"]["names"] == [f"wal/{system_id}/{lost}"]
    assert doc["missing"]["wal"]["kind"] == "WAL" and doc["lag_seconds"] > 5

    subprocess.run(  # the log follower's one-shot form fills the gap
        [*SAFEHOLD, *pg_env.safehold_args, "replicate", "--to", replica, "--logs-only"],
        check=True,
    )
    (status,) = evaluate(setup.policy, datetime.now(UTC)).replicas
    assert status.lag == timedelta(0) and status.missing == {} and status.behind is None
