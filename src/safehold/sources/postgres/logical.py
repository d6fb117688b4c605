"""Logical backups: pg_dump (custom format) of each database and pg_dumpall --globals-only,
streamed into one snapshot without temporary files; restore with parallel pg_restore.

Snapshot layout: ``/pg-dump/globals.sql`` and ``/pg-dump/<database>.dump``; its source is
``{"kind": "postgres-dump", "system_id", "version", "databases"}``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from safehold import __version__
from safehold.archive.backup import own_node
from safehold.archive.browse import dump_file, find_node
from safehold.archive.chunker import Chunker
from safehold.archive.metadata import user_name
from safehold.archive.tree import doc_name, encode_docs, node_doc
from safehold.errors import InvalidArgument
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot, now
from safehold.sources import external
from safehold.sources.postgres.physical import connect, query_one
from safehold.sources.postgres.status import pg_bin_dir

__all__ = ["DUMP_DIR", "DumpResult", "restore_dump", "run_dump"]

DUMP_DIR = "pg-dump"
TAG = "pg-dump"


@dataclass
class DumpResult:
    snapshot: Snapshot
    databases: dict[str, int] = field(default_factory=dict)  # name -> bytes
    data_added: int = 0
    duration: float = 0.0


def _dsn_for(conninfo: str, dbname: str) -> str:
    return make_conninfo(conninfo, dbname=dbname)


def run_dump(
    repo: Repository,
    conninfo: str,
    databases: list[str] | None = None,
    hostname: str | None = None,
    tags: list[str] | None = None,
    ensure_locked: Callable[[], None] | None = None,
) -> DumpResult:
    started = time.monotonic()
    with connect(conninfo) as conn:
        system_id = str(query_one(conn, "SELECT system_identifier FROM pg_control_system()"))
        version = int(query_one(conn, "SHOW server_version_num"))
        present = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
                " ORDER BY datname"
            ).fetchall()
        ]
    wanted = databases or present
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise InvalidArgument(f"no such database: {', '.join(missing)}")
    bin_dir = pg_bin_dir(version)
    chunker = Chunker(repo.config)
    result = DumpResult(snapshot=None)  # type: ignore[arg-type]
    docs = []
    with repo.writer(before_index=ensure_locked) as writer:

        def save(name: str, argv: list[str]) -> None:
            size, content = 0, []
            with external.stream(argv) as out:
                for chunk in chunker.chunks(out):  # type: ignore[arg-type]
                    content.append(writer.save(BlobType.DATA, chunk)[0])
                    size += len(chunk)
            docs.append(
                node_doc(own_node(name.encode(), "file", 0o600, size=size, content=content))
            )
            result.databases[name] = size

        save("globals.sql", [os.path.join(bin_dir, "pg_dumpall"), "--globals-only", "-d", conninfo])
        for db in wanted:
            save(
                f"{db}.dump",
                [os.path.join(bin_dir, "pg_dump"), "-Fc", "-d", _dsn_for(conninfo, db)],
            )
        docs.sort(key=doc_name)
        subtree = writer.save(BlobType.TREE, encode_docs(docs))[0].hex()
        top = own_node(DUMP_DIR.encode(), "dir", 0o700, subtree=subtree)
        root = writer.save(BlobType.TREE, encode_docs([node_doc(top)]))[0].hex()
    result.duration = time.monotonic() - started
    result.data_added = writer.stats.stored_bytes
    params = conninfo_to_dict(conninfo)
    snapshot = Snapshot(
        time=now(),
        tree=root,
        paths=[f"/{DUMP_DIR}"],
        hostname=hostname or socket.gethostname(),
        username=user_name(os.getuid()),
        tags=sorted({TAG, *(tags or [])}),
        program_version=f"safehold {__version__}",
        summary={
            "total_files_processed": len(docs),
            "total_bytes_processed": sum(result.databases.values()),
            "data_added": result.data_added,
            "total_duration": round(result.duration, 3),
        },
        source={
            "kind": "postgres-dump",
            "system_id": system_id,
            "version": version,
            "databases": {
                k.removesuffix(".dump"): v
                for k, v in result.databases.items()
                if k.endswith(".dump")
            },
            "server": f"{params.get('host', '')}:{params.get('port', '')}",
        },
    )
    if ensure_locked is not None:
        ensure_locked()
    repo.save_snapshot(snapshot)
    result.snapshot = snapshot
    return result


def restore_dump(
    repo: Repository,
    snap: Snapshot,
    conninfo: str,
    database: str,
    new_name: str | None = None,
    jobs: int = 2,
    globals_too: bool = False,
    tmp_dir: str | None = None,
) -> str:
    """Restore one database of a dump snapshot into a new database; returns its name.

    pg_restore runs parallel jobs only from a file, so the dump is first written to a
    temporary file (removed afterwards).
    """
    if snap.source.get("kind") != "postgres-dump":
        raise InvalidArgument(f"snapshot {snap.short_id} is not a `pg dump` snapshot")
    node = find_node(repo, snap, f"/{DUMP_DIR}/{database}.dump")
    if node is None or node.type != "file":
        raise InvalidArgument(f"database {database} is not in snapshot {snap.short_id}")
    target = new_name or database
    bin_dir = pg_bin_dir(int(snap.source.get("version", 0)))
    with tempfile.TemporaryDirectory(prefix="safehold-pgrestore-", dir=tmp_dir) as tmp:
        if globals_too:
            globals_node = find_node(repo, snap, f"/{DUMP_DIR}/globals.sql")
            assert globals_node is not None
            path = os.path.join(tmp, "globals.sql")
            with open(path, "wb") as f:
                dump_file(repo, globals_node, f)
            # roles that exist already (postgres itself) fail one statement each: expected
            external.run(
                [os.path.join(bin_dir, "psql"), "-X", "-q", "-d", conninfo, "-f", path], check=False
            )
        path = os.path.join(tmp, f"{database}.dump")
        with open(path, "wb") as f:
            dump_file(repo, node, f)
        with connect(conninfo) as conn:
            conn.execute(f'CREATE DATABASE "{target.replace(chr(34), chr(34) * 2)}"')
        external.run(
            [
                os.path.join(bin_dir, "pg_restore"),
                "-j",
                str(jobs),
                "--exit-on-error",
                "-d",
                _dsn_for(conninfo, target),
                path,
            ]
        )
    return target
