"""Region A is lost: a cluster restored from the replica in region B and promoted archives
its new timeline (history file, claim, segments) into that replica, with this host's paths."""

from __future__ import annotations

import json
import uuid

from tests.servers import S3Server
from tests.sources.pg_fixtures import PgEnv


def _keys(s3: S3Server, bucket: str, prefix: str) -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])}


def test_promoted_after_region_loss_archives_into_the_replica(
    pg_env: PgEnv, seaweedfs: S3Server
) -> None:
    bucket = f"pg-replica-{uuid.uuid4().hex[:8]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    replica = seaweedfs.location(bucket)
    env = seaweedfs.env()
    primary = pg_env.cluster("region_a")
    primary.sql("CREATE TABLE t (region text)")
    system_id = pg_env.backup(primary, "full")["source"]["system_id"]
    primary.sql("INSERT INTO t SELECT 'a' FROM generate_series(1, 50)")
    primary.wait_archived()
    pg_env.run("replicate", "--to", replica, extra_env=env)
    primary.stop()
    lost = pg_env.repo.with_name("repo-region-a-lost")
    pg_env.repo.rename(lost)  # region A is gone, its repository with it
    try:
        promoted, proc = pg_env.restore(
            "region_b", "--promote-as-primary", repo=replica, extra_env=env
        )
        result = json.loads(proc.stdout)
        assert result["archiving"] == "primary" and result["timeline"] == 2
        command = promoted.sql("SHOW archive_command")[0][0]
        assert replica in command and "wal-push --primary" in command and "spool" not in command
        promoted.sql("INSERT INTO t SELECT 'b' FROM generate_series(1, 50)")
        promoted.wait_archived()
        last = promoted.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        archived = _keys(seaweedfs, bucket, f"wal/{system_id}/")
        assert {"00000002.history", "00000002.lineage", last} <= archived
        promoted.stop()
    finally:
        lost.rename(pg_env.repo)
