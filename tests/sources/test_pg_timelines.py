"""After a restore promotes a cluster, it archives on a new timeline (history file and
segments; an archive recovery leaves no .partial segment, a promoted streaming standby does), and later restores follow that timeline, from old and new base backups alike."""

from __future__ import annotations

import json

from tests.sources.pg_fixtures import PgEnv


def test_promoted_cluster_archives_a_new_timeline_and_restores_from_it(pg_env: PgEnv) -> None:
    primary = pg_env.cluster("tl")
    primary.sql("CREATE TABLE t (phase text, n int)")
    old_backup = pg_env.backup(primary, "full")
    primary.sql("INSERT INTO t SELECT 'a', g FROM generate_series(1, 100) g")
    primary.wait_archived()
    primary.stop()  # the primary is lost

    promoted, proc = pg_env.restore("promoted", "--promote-as-primary")
    assert json.loads(proc.stdout)["timeline"] == 2
    promoted.sql("INSERT INTO t SELECT 'b', g FROM generate_series(1, 100) g")
    promoted.wait_archived()
    system_id = old_backup["source"]["system_id"]
    names = {p.name for p in (pg_env.repo / "wal" / system_id).iterdir()}
    assert "00000002.history" in names
    assert "00000002.lineage" in names  # claimed by `wal-push --primary`: production
    assert any(n.startswith("00000002") and len(n) == 24 for n in names)

    # from the old base backup (timeline 1), following the history to timeline 2
    again, proc = pg_env.restore("from_old", old_backup["snapshot_id"], "--no-archive")
    assert again.sql("SELECT phase, count(*) FROM t GROUP BY 1 ORDER BY 1") == [
        ("a", 100),
        ("b", 100),
    ]
    again.stop()

    # a base backup taken on timeline 2
    new_backup = pg_env.backup(promoted, "full")
    assert new_backup["source"]["timeline"] == 2
    promoted.sql("INSERT INTO t SELECT 'c', g FROM generate_series(1, 100) g")
    promoted.wait_archived()
    latest, proc = pg_env.restore("from_new", "--no-archive")
    result = json.loads(proc.stdout)
    assert result["snapshot_id"] == new_backup["snapshot_id"]
    assert latest.sql("SELECT phase, count(*) FROM t GROUP BY 1 ORDER BY 1") == [
        ("a", 100),
        ("b", 100),
        ("c", 100),
    ]
    latest.stop()
    promoted.stop()
