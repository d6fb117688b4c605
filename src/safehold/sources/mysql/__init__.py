"""MariaDB (and MySQL) protection: logical dumps, physical backups, binlog archiving, PITR.

One module per job: ``client`` (how to reach the server, its facts), ``logical``
(mariadb-dump streamed into the repository, restore through the mariadb client),
``physical`` (mariabackup full and incremental, staged then stored; chain restore),
``binlog`` (binlog objects in the repository, event times, replay to a time),
``status`` (restorable windows and RPO exposure). docs/sources.md describes the use.
"""
