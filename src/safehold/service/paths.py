"""Where a daemon keeps its state: one directory per policy file.

``[daemon] state_dir`` names it; otherwise it is derived from the policy file's absolute
path under /var/lib/safehold (root) or $XDG_STATE_HOME/safehold (~/.local/state), so that
two daemons on two policies never share a job history or a lock, and ``safehold status``
and ``safehold jobs`` find the daemon's files from the same policy file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from safehold.dr.policy import Policy

__all__ = ["HISTORY_FILE", "LOCK_FILE", "state_dir"]

HISTORY_FILE = "history.sqlite"
LOCK_FILE = "daemon.lock"


def state_dir(policy: Policy, config_path: str | os.PathLike[str]) -> Path:
    if policy.daemon.state_dir is not None:
        return Path(policy.daemon.state_dir)
    absolute = os.path.abspath(config_path)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:8]
    name = f"{Path(absolute).stem}-{digest}"
    if os.geteuid() == 0:
        return Path("/var/lib/safehold") / name
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "safehold" / name
