"""Split brain: the primary's Patroni frozen (SIGSTOP) longer than the leader key's ttl,
then resumed, on the shared synchronous_mode cluster (tests/standby/conftest.py).

While Patroni is frozen its PostgreSQL goes on running as primary. Two writers commit one
row at a time: one through HAProxy's write port, one straight to the old primary's port
(a client that bypasses HAProxy). HAProxy stops sending clients to the old primary as
soon as its Patroni stops answering the health check, long before the leader key
expires; the replica is elected when it does (observed as its ``GET /leader`` turning
200). Asserted: no write through HAProxy was acknowledged by the old primary after the
election, writes through HAProxy land on the new primary, the resumed Patroni demotes its
node, which comes back as a replica; and every commit either writer had acknowledged, the
direct client's included, is on the new primary. That last part holds because of
synchronous_mode: the old primary can acknowledge nothing once its synchronous standby
stopped following it. With asynchronous replication the direct client's commits of that
window would be acknowledged and then lost when the old primary is rewound (measured in
docs/standby.md, "Split brain"); Patroni's watchdog is what closes that window.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg

from safehold.dr.standby.drill import Writer
from safehold.dr.standby.processes import listening_pids
from tests.standby.conftest import SyncStandby
from tests.standby.servers import rest, wait_for

TABLE = "split_brain"
TTL_SECONDS = 20  # the shared cluster's
DIRECT_IDS = 1_000_000_000  # the direct writer's ids start here, HAProxy's at 1


def test_a_frozen_primary_takes_no_write_after_the_election(sync_standby: SyncStandby) -> None:
    sync, cluster = sync_standby, sync_standby.cluster
    primary, replica = sync.settled()
    old, new = cluster.nodes[primary], cluster.nodes[replica]
    with psycopg.connect(cluster.write_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
    through_haproxy = Writer(cluster.write_conninfo(), TABLE)
    direct = Writer(cluster.node_conninfo(primary), TABLE, DIRECT_IDS)
    threads = [threading.Thread(target=w.run, daemon=True) for w in (through_haproxy, direct)]
    for thread in threads:
        thread.start()
    [patroni] = listening_pids(old.rest_port)
    try:
        wait_for("both writers", lambda: min(len(through_haproxy.acked), len(direct.acked)) > 10)
        os.kill(patroni, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            elected = wait_for(
                f"{replica} elected",
                lambda: rest(new.rest_port, "/leader")[0] == 200 and time.monotonic(),
                120,
            )
            # frozen past the ttl, and on after the election: the old postgres still runs
            # as primary, the window a split brain would need
            time.sleep(max(frozen + TTL_SECONDS + 5 - time.monotonic(), 5.0))
        finally:
            os.kill(patroni, signal.SIGCONT)
        resumed = time.monotonic()
        assert sync.settled() == (replica, primary)  # demoted, rewound, following
        rejoined = time.monotonic()
        wait_for(
            "a write through HAProxy after the rejoin",
            lambda: through_haproxy.acked[-1][2] > rejoined,
        )
    finally:
        for writer in (through_haproxy, direct):
            writer.stop.set()
        for thread in threads:
            thread.join(10)

    def on(writer: Writer, node: str, after: float) -> list[int]:
        port = cluster.nodes[node].port
        return [i for i, p, when in writer.acked if p == port and when > after]

    last_on_old = max(w for _, p, w in through_haproxy.acked if p == old.port)
    direct_after = on(direct, primary, elected)
    print(
        f"election {elected - frozen:.1f} s after the freeze, resumed at {resumed - frozen:.1f} s;"
        f" last write through HAProxy on {primary} {last_on_old - frozen:.1f} s after the"
        f" freeze; the direct client's writes acknowledged by {primary} after the election:"
        f" {len(direct_after)}"
    )
    assert on(through_haproxy, primary, elected) == []
    assert on(through_haproxy, replica, elected)
    with psycopg.connect(cluster.node_conninfo(replica), autocommit=True) as conn:
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}")}
    acked = [i for w in (through_haproxy, direct) for i, _, _ in w.acked]
    assert sorted(i for i in acked if i not in present) == []
