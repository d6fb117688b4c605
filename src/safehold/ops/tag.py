"""``tag``: change the tags of snapshots (restic's ``tag``).

Snapshot documents are written once and named by their hash, so a change of tags is a
new document: it is written before the old one is deleted (a crash between the two
leaves both, never neither), and its ``original`` names the first snapshot of the line
(kept when already set, as restic does), so the change can be traced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from safehold.errors import InvalidArgument
from safehold.repo.repository import Repository
from safehold.repo.snapshot import Snapshot

__all__ = ["TagChange", "TagEdit", "retag"]


@dataclass(frozen=True)
class TagEdit:
    """``set`` replaces every tag (None: keep them); then ``add``, then ``remove``."""

    add: Sequence[str] = ()
    remove: Sequence[str] = ()
    set: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.set is not None and (self.add or self.remove):
            raise InvalidArgument("--set cannot be combined with --add or --remove")
        if self.set is None and not (self.add or self.remove):
            raise InvalidArgument("nothing to do: give --add, --remove or --set")

    def apply(self, tags: list[str]) -> list[str]:
        result = set(tags if self.set is None else self.set)
        result |= set(self.add)
        result -= set(self.remove)
        return sorted(result)


@dataclass(frozen=True)
class TagChange:
    old: Snapshot
    new_id: str | None  # None: the tags were already as asked
    tags: list[str]

    def to_doc(self) -> dict[str, object]:
        return {
            "id": self.old.id,
            "short_id": self.old.short_id,
            "old_tags": self.old.tags,
            "tags": self.tags,
            "new_id": self.new_id,
            "changed": self.new_id is not None,
        }


def retag(
    repo: Repository,
    snapshots: list[Snapshot],
    edit: TagEdit,
    before_write: Callable[[], None] = lambda: None,
) -> list[TagChange]:
    """Apply ``edit`` to each snapshot; ``before_write`` runs before each irreversible step."""
    changes = []
    for snapshot in snapshots:
        tags = edit.apply(snapshot.tags)
        if tags == sorted(snapshot.tags):
            changes.append(TagChange(snapshot, None, tags))
            continue
        new = replace(snapshot, tags=tags, original=snapshot.original or snapshot.id, id="")
        before_write()
        new_id = repo.save_snapshot(new)
        repo.delete_snapshot(snapshot.id)
        changes.append(TagChange(snapshot, new_id, tags))
    return changes
