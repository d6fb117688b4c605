"""The one tree of errors that safehold raises.

Lower layers raise these; only ``cli/main.py`` turns them into one line on stderr and an
exit code. A class's docstring is the message template, filled with its arguments, so the
wording lives next to the error (as borg does).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "CorruptObject",
    "DrillCheckFailed",
    "DrillObjectiveMissed",
    "Interrupted",
    "InvalidArgument",
    "InvalidPath",
    "LockLost",
    "NoCopyReadable",
    "NotARepository",
    "NotFound",
    "RecoveryFailed",
    "RecoveryRefused",
    "RecoveryUnhealthy",
    "RepositoryExists",
    "RepositoryLocked",
    "RepositoryMissing",
    "SafeholdError",
    "SnapshotNotFound",
    "StoreError",
    "StoreRetriesExhausted",
    "StoreUnreachable",
    "TransientStoreError",
    "WrongPassword",
    "WrongPasswordFrom",
]


class SafeholdError(Exception):
    """{0}"""

    exit_code = 1

    def __str__(self) -> str:
        template = (type(self).__doc__ or "{0}").strip().splitlines()[0]
        try:
            return template.format(*self.args)
        except (IndexError, KeyError):
            return " ".join(str(a) for a in self.args) or template


class InvalidArgument(SafeholdError):
    """{0}"""


class StoreError(SafeholdError):
    """Storage error: {0}"""


class NotFound(StoreError):
    """Object {0} not found in the store"""


class AlreadyExists(StoreError):
    """Object {0} already exists in the store"""


class TransientStoreError(StoreError):
    """Temporary storage failure on {0}: {1}"""


class StoreUnreachable(TransientStoreError):
    """cannot reach {0} ({1})"""

    # No connection at all (refused, unknown host, connect timeout): retried like any
    # transient failure, and after the last attempt raised again with the attempts added.
    # The store client's own text is the cause (`--verbose` prints it).


class StoreRetriesExhausted(StoreError):
    """{0}: gave up on {1} after {2} attempts over {3} s; last error: {4}"""


class RepositoryMissing(SafeholdError):
    """Repository {0} does not exist; create it with `safehold init`"""

    exit_code = 10


class NotARepository(SafeholdError):
    """{0} is not a safehold repository: {1}"""

    exit_code = 10


class RepositoryExists(SafeholdError):
    """A repository already exists at {0}; refusing to overwrite it"""


class WrongPassword(SafeholdError):
    """Wrong password: no key of repository {0} opens with it"""

    exit_code = 12


class WrongPasswordFrom(WrongPassword):
    """Wrong password from {1}: no key of repository {0} opens with it"""


class CorruptObject(SafeholdError):
    """Corrupt data in {0}: {1}"""


class SnapshotNotFound(SafeholdError):
    """No snapshot matches {0!r}"""


class Interrupted(SafeholdError):
    """Interrupted; nothing half-done was recorded"""

    exit_code = 130


class InvalidPath(SafeholdError):
    """Refusing unsafe path in snapshot: {0!r}"""


class RepositoryLocked(SafeholdError):
    """Repository is locked: {0}"""

    exit_code = 11


class LockLost(SafeholdError):
    """Lost the repository lock ({0}); stopped before writing anything that depends on it"""

    exit_code = 11


class IndexNeedsRepair(SafeholdError):
    """Tree {0} is in the index but its pack is lost; run `safehold repair index` first"""


class ReplicaMismatch(SafeholdError):
    """{0} is not a replica of {1}: {2}; refusing to replicate into it"""


class LogConflict(SafeholdError):
    """{0} is already archived with different content; refusing to overwrite it"""

    exit_code = 2


class RecoveryRefused(SafeholdError):
    """Recovery refused, nothing was written: {0}"""


class RecoveryFailed(SafeholdError):
    """Recovery failed in step {0}: {1}"""


class RecoveryUnhealthy(SafeholdError):
    """The service came back but is not healthy: {0}"""

    exit_code = 6


class DrillCheckFailed(SafeholdError):
    """Drill of {0} failed: {1}"""

    exit_code = 7  # the data did not come back right: a restore error or a failed check


class DrillObjectiveMissed(SafeholdError):
    """Drill of {0}: the data is right but {1}"""

    exit_code = 8  # every check passed, the RTO or the RPO objective was missed


class NoCopyReadable(SafeholdError):
    """No copy of repository {0} can be read: {1}"""

    exit_code = 10


class SnapshotTooLarge(SafeholdError):
    """Snapshot {0} expands to {1} entries, more than the {2} it accounts for; refusing"""


class TooDeep(SafeholdError):
    """{0}: deeper than {1} directory levels, more than safehold restores or lists"""
