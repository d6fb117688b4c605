"""Reading and naming file metadata: owners by name, extended attributes."""

from __future__ import annotations

import functools
import grp
import os
import pwd

__all__ = ["gid_for", "group_name", "read_xattrs", "uid_for", "user_name"]


@functools.cache
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@functools.cache
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


@functools.cache
def uid_for(name: str, fallback: int) -> int:
    """The local uid of a user name, or ``fallback`` where the name is unknown here."""
    try:
        return pwd.getpwnam(name).pw_uid if name else fallback
    except KeyError:
        return fallback


@functools.cache
def gid_for(name: str, fallback: int) -> int:
    try:
        return grp.getgrnam(name).gr_gid if name else fallback
    except KeyError:
        return fallback


def read_xattrs(path: bytes) -> dict[str, bytes]:
    """Extended attributes of a path (not following symlinks); empty where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    attrs = {}
    for name in names:
        try:
            attrs[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return attrs
