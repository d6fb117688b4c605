"""Hot standby: the policy table, Patroni's and HAProxy's configuration from it, status and
failover drills. Patroni elects, etcd stores, HAProxy routes; safehold sets them up and
measures them (docs/standby.md)."""
