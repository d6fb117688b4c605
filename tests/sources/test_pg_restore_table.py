"""One table back from just before a mistake, with its primary key, indexes, constraints
and sequence: `pg restore-table` (PITR into a sandbox, then pg_dump -t into the live
cluster). Oracle: the rows' commit times by ``pg_xact_commit_timestamp``."""

from __future__ import annotations

import time

from tests.sources.pg_fixtures import PgEnv
from tests.sources.pg_server import PgCluster

SCHEMA = """
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer text NOT NULL,
    amount numeric NOT NULL CHECK (amount > 0)
);
CREATE INDEX orders_customer_idx ON orders (customer);
CREATE TABLE other (n int);
"""


def _shape(cluster: PgCluster, table: str) -> dict[str, object]:
    """What besides rows makes the table: its indexes, constraints, and a working default."""
    indexes = cluster.sql(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", table
    )
    constraints = cluster.sql(
        "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass ORDER BY 1, 2",
        table,
    )
    return {
        "indexes": [i[0].replace(table, "T") for i in indexes],
        "constraints": constraints,
    }


def _restore_table(env: PgEnv, cluster: PgCluster, at: object, *args: str) -> object:
    return env.json(
        "pg",
        "restore-table",
        "orders",
        "--to-time",
        str(at),
        "-d",
        "postgres",
        "--dsn",
        cluster.conninfo,
        "--safehold-command",
        str(env.wrapper),
        "--work-dir",
        str(env.base),
        *args,
    )


def test_one_table_comes_back_whole_from_just_before_the_mistake(pg_env: PgEnv) -> None:
    live = pg_env.cluster("table_live")
    live.sql(SCHEMA)
    shape = _shape(live, "orders")
    pg_env.backup(live, "full")
    for n in range(30):
        live.sql("INSERT INTO orders (customer, amount) VALUES (%s, %s)", f"c{n % 7}", n + 1)
        time.sleep(0.01)
    good = live.sql("SELECT id, pg_xact_commit_timestamp(xmin) FROM orders ORDER BY id")
    before_mistake = good[-1][1]
    live.sql("DELETE FROM orders WHERE id % 3 = 0")  # the mistake
    live.sql("INSERT INTO other VALUES (1)")  # life goes on
    live.wait_archived()

    result = _restore_table(pg_env, live, before_mistake.isoformat(), "--as", "orders_back")
    assert result["table"] == "public.orders_back" and result["rows"] == 30
    assert live.sql("SELECT id FROM orders_back ORDER BY id") == [(i,) for i, _ in good]
    assert _shape(live, "orders_back") == shape
    live.sql("INSERT INTO orders_back (customer, amount) VALUES ('new', 1)")  # own sequence
    assert live.sql("SELECT count(*) FROM orders") == [(20,)]  # the live table untouched

    live.sql("DROP TABLE orders_back")
    live.sql("DROP TABLE orders")  # a worse mistake; then put it back in place
    live.wait_archived()
    result = _restore_table(pg_env, live, before_mistake.isoformat(), "--replace")
    assert result["table"] == "public.orders" and result["replaced"]
    assert live.sql("SELECT id FROM orders ORDER BY id") == [(i,) for i, _ in good]
    assert _shape(live, "orders") == shape
    live.stop()
