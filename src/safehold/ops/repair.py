"""``repair index``: rebuild the index from the pack headers alone.

Every pack carries its own list of blobs (docs/FORMAT.md §6), so a lost or damaged index
costs nothing that the packs still hold. The new index document is written before any
old one is deleted: an interruption leaves two indexes that agree, never none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safehold.errors import CorruptObject, NotFound
from safehold.repo.index import Index
from safehold.repo.pack import PackEntry
from safehold.repo.repository import Repository, pack_key

__all__ = ["RebuildResult", "rebuild_index"]


@dataclass
class RebuildResult:
    packs: int = 0
    blobs: int = 0
    new_index: str | None = None
    removed: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (pack key, why)


def rebuild_index(repo: Repository) -> RebuildResult:
    """Index every pack whose header reads, replace the old index documents, reload."""
    result = RebuildResult()
    old = [info.key for info in repo.store.list("index/")]
    packs: dict[str, list[PackEntry]] = {}
    for info in sorted(repo.store.list("data/"), key=lambda i: i.key):
        pack = info.key.rsplit("/", 1)[-1]
        try:
            packs[pack] = repo.read_pack_header(pack)
        except (CorruptObject, NotFound) as exc:
            result.unreadable.append((pack_key(pack), str(exc)))
    result.packs = len(packs)
    result.blobs = sum(len(entries) for entries in packs.values())
    result.new_index = repo.save_index(packs)
    for key in old:
        if key != f"index/{result.new_index}":
            repo.store.delete(key)
            result.removed.append(key.removeprefix("index/"))
    repo.index = Index()
    for pack, entries in packs.items():
        repo.index.add_pack(pack, entries)
    return result
