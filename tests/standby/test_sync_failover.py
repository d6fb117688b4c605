"""``synchronous_mode = true`` (tests/standby/conftest.py's shared cluster): a primary
SIGKILLed with its Patroni (a dead host) loses no commit PostgreSQL acknowledged.

On 127.0.0.1 an asynchronous replica misses nothing either: the walsender has sent every
byte before the kill lands. So the primary's walsender is stopped (SIGSTOP) for a moment
first, as a stalled network would hold the WAL back; an asynchronous primary goes on
acknowledging commits the replica never gets (run with synchronous_mode = false, this
test fails: docs/standby.md), a synchronous one holds them until the kill.

Patroni promotes only the replica its ``/sync`` key names, and writes the key a loop
after it set synchronous_standby_names (PostgreSQL then already calls the replica
``sync``), so the test waits until ``standby status`` names the synchronous standby from
the key; with no synchronous standby (the new primary alone) ``standby status`` says so.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg

from safehold.dr.load import load_policy
from safehold.dr.standby.config import resolve_setup
from safehold.dr.standby.drill import Writer, kill_node
from safehold.dr.standby.processes import process_tree
from safehold.dr.standby.status import StandbyStatus, standby_status
from tests.standby.conftest import SyncStandby
from tests.standby.servers import rest, wait_for

TABLE = "sync_failover"
STALL_SECONDS = 1.5


def walsenders(sync: SyncStandby, node: str) -> list[int]:
    postmaster = sync.cluster.nodes[node].postmaster_pid()
    assert postmaster is not None
    found = []
    for pid in process_tree({postmaster}):
        try:
            if b"walsender" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_killed_primary_loses_no_acknowledged_commit(sync_standby: SyncStandby) -> None:
    sync, cluster = sync_standby, sync_standby.cluster
    began = time.monotonic()
    primary, replica = sync.settled()
    settled = time.monotonic()
    text = sync.env.run("standby", "status", "db", "-c", cluster.policy).stdout.decode()
    assert f"synchronous standby {replica}" in text and "healthy" in text, text
    with psycopg.connect(cluster.write_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
    writer = Writer(cluster.write_conninfo(), TABLE)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        wait_for("commits through HAProxy", lambda: len(writer.acked) >= 20, 30)
        stalled = walsenders(sync, primary)
        assert stalled, f"no walsender on {primary}"
        for pid in stalled:
            os.kill(pid, signal.SIGSTOP)
        stall = time.monotonic()
        time.sleep(STALL_SECONDS)
        acked_in_stall = sum(1 for a in writer.acked if a[2] > stall)
        kill_node(sync.node(primary))
        killed = time.monotonic()
        new_port = cluster.nodes[replica].port
        [first] = wait_for(
            "a commit through HAProxy on the new primary",
            lambda: [a for a in writer.acked if a[1] == new_port and a[2] > killed][:1],
            120,
            cluster.nodes[replica].log,
        )
    finally:
        writer.stop.set()
        thread.join(10)
    with psycopg.connect(cluster.node_conninfo(replica), autocommit=True) as conn:
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}")}
    missing = sorted(i for i, _, _ in writer.acked if i not in present)
    print(
        f"settled after {settled - began:.1f} s; acknowledged {len(writer.acked)},"
        f" {acked_in_stall} while the walsender was stopped; writes again"
        f" {first[2] - killed:.1f} s after the kill; missing on {replica}: {missing}"
    )
    assert missing == []

    # the new primary runs alone: no synchronous standby, and status says so
    doc = sync.status()
    assert doc["primary"] == replica and doc["sync_standby"] is None, doc
    assert any(str(p).startswith("no synchronous standby") for p in doc["problems"]), doc
    text = sync.env.run("standby", "status", "db", "-c", cluster.policy).stdout.decode()
    assert "synchronous standby NONE" in text and "PROBLEM: no synchronous standby" in text

    # the killed node comes back, rewound, and becomes the synchronous standby: PostgreSQL
    # calls it sync a moment before Patroni's key names it; only the key counts
    old = cluster.nodes[primary]
    assert old.proc is not None
    old.proc.wait(10)
    old.start(cluster.wrapper)
    restarted = time.monotonic()
    in_window = wait_for(
        "a synchronous standby", lambda: named_too_early(sync, replica, primary), 120
    )
    print(f"seen sync in PostgreSQL only: {in_window is not True}")
    if in_window is not True:  # read inside the moment: no synchronous standby yet
        assert in_window.sync_standby is None, in_window
        assert any(p.startswith("no synchronous standby") for p in in_window.problems)
    assert sync.settled() == (replica, primary)
    print(f"{primary} the synchronous standby {time.monotonic() - restarted:.1f} s after its start")


def named_too_early(sync: SyncStandby, primary: str, replica: str) -> StandbyStatus | bool:
    """``standby status`` read while PostgreSQL on ``primary`` already calls ``replica``
    sync but Patroni's /sync key does not name it yet; True once the key names it."""
    nodes = sync.cluster.nodes
    if rest(nodes[replica].rest_port, "/sync")[0] == 200:
        return True
    _, doc = rest(nodes[primary].rest_port, "/patroni")
    rows = doc.get("replication") or []
    if not any(r["application_name"] == replica and r["sync_state"] == "sync" for r in rows):
        return False
    status = standby_status(resolve_setup(load_policy(sync.cluster.policy), "db"))
    if rest(nodes[replica].rest_port, "/sync")[0] == 200:
        return True  # the key was written meanwhile: this reading proves nothing
    return status


def test_the_writer_never_tries_an_id_twice(sync_standby: SyncStandby) -> None:
    """A commit whose acknowledgment was lost (cut session, dead primary) may be on the new
    primary: the writer of the drills and of these tests retried its id, failed on the key
    from then on, and waited out its deadline (the failure that made this test flaky)."""
    cluster = sync_standby.cluster
    with psycopg.connect(cluster.write_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
        conn.execute(f"INSERT INTO {TABLE} VALUES (2)")  # committed, never acknowledged
    writer = Writer(cluster.write_conninfo(), TABLE)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        wait_for("ten commits", lambda: len(writer.acked) >= 10, 30)
    finally:
        writer.stop.set()
        thread.join(10)
    assert [a[0] for a in writer.acked[:3]] == [1, 3, 4]
