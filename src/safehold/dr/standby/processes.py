"""Local processes by what they listen on, for a drill that kills a node like a dead host.

A node's Patroni is the process listening on its REST port, its postmaster the one on its
PostgreSQL port: found through /proc (the socket's inode in /proc/net/tcp*, then the
process holding it), so no PID file can be stale.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["is_this_host", "listening_pids", "process_tree"]

_LISTEN = "0A"


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == _LISTEN
                and int(fields[1].split(":")[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def listening_pids(port: int) -> set[int]:
    """The processes of this host that listen on TCP ``port``."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    pids = set()
    for entry in os.listdir("/proc") if targets else []:
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in targets for fd in fds):
                pids.add(int(entry))
        except OSError:
            continue
    return pids


def process_tree(roots: set[int]) -> set[int]:
    """``roots`` and every process descended from them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def is_this_host(host: str) -> bool:
    """Whether ``host`` names an address of this machine: binding to it succeeds only
    then (no packet is sent). Nodes often share a data directory path and a port, so
    neither tells a local node from a remote one."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    for family, kind, _, _, address in infos:
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False
