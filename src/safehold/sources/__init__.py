"""Sources: one package per kind of data (PostgreSQL, ...), each backing up into snapshots."""
