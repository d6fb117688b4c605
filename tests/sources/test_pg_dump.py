"""Logical dumps: every database and the globals in one snapshot; one database brought back
under a new name with parallel pg_restore."""

from __future__ import annotations

from tests.sources.pg_fixtures import PgEnv


def test_dump_and_restore_dump_round_trip(pg_env: PgEnv) -> None:
    server = pg_env.cluster("dump")
    server.sql("CREATE ROLE app LOGIN")
    server.sql("CREATE DATABASE shop OWNER app")
    server.sql(
        "CREATE TABLE orders (id int PRIMARY KEY, item text);"
        "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 5000) g;"
        "CREATE INDEX ON orders (item); ALTER TABLE orders OWNER TO app",
        dbname="shop",
    )
    summary = pg_env.json("pg", "dump", "--dsn", server.conninfo)
    assert set(summary["files"]) == {"globals.sql", "postgres.dump", "shop.dump"}
    listing = pg_env.run("ls", summary["snapshot_id"], "/pg-dump").stdout.decode()
    assert "shop.dump" in listing

    # the table is lost: bring the database back beside it
    server.sql("DROP TABLE orders", dbname="shop")
    restored = pg_env.json(
        "pg", "restore-dump", "shop", "--as", "shop_restored", "--dsn", server.conninfo, "-j", "2"
    )
    assert restored["database"] == "shop_restored"
    assert server.sql("SELECT count(*), max(item) FROM orders", dbname="shop_restored") == [
        (5000, "item 999")
    ]
    assert (
        server.sql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop_restored'"
        )
        != []
    )
    owner = server.sql(
        "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'", dbname="shop_restored"
    )
    assert owner == [("app",)]

    # into a fresh cluster: the globals (role app) come first
    fresh = pg_env.cluster("dump_fresh")
    pg_env.json("pg", "restore-dump", "shop", "--globals", "--dsn", fresh.conninfo)
    assert fresh.sql("SELECT count(*) FROM orders", dbname="shop") == [(5000,)]
    assert fresh.sql(
        "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'", dbname="shop"
    ) == [("app",)]
