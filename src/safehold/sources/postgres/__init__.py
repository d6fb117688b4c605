"""PostgreSQL protection: physical backups, WAL archiving, point-in-time recovery, dumps.

One module per job: ``walnames`` (segment names and LSNs), ``walarchive`` (WAL objects in
the repository), ``physical`` (pg_backup_start/stop around the archiver), ``restore``
(base backup choice, recovery settings, start and wait), ``status`` (windows and gaps),
``retention`` (which WAL prune may drop), ``logical`` (pg_dump / pg_restore).
"""
