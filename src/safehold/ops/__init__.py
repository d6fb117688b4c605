"""Operations on a whole repository: retention now; prune, check and replication to come.

This layer decides and reports; it never prints (the CLI renders what it returns).
"""
