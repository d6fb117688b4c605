"""``cat``: one repository object as stored, decrypted and decompressed, for debugging
with docs/FORMAT.md (restic's ``cat``).

JSON objects come back as their plaintext bytes (the config, an index, a snapshot, a key
file, a tree); a blob as its raw bytes. Ids may be shortened to a unique prefix, except
blob and tree ids (the index is not searched by prefix); a tree may also be named as
``SNAPSHOT`` or ``SNAPSHOT:/path`` (restic's ``snapshot:subfolder``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict

from safehold.archive.browse import find_node
from safehold.errors import InvalidArgument
from safehold.repo.pack import BlobType
from safehold.repo.repository import Repository
from safehold.repo.snapshot import find_snapshot

__all__ = ["CAT_KINDS", "cat_object"]

CAT_KINDS = ("config", "index", "snapshot", "key", "tree", "blob")
NEEDS_INDEX = frozenset({"tree", "blob"})
_BLOB_ID = re.compile(r"[0-9a-f]{64}")


def cat_object(repo: Repository, kind: str, ref: str | None) -> bytes:
    """The plaintext of one object; ``tree`` and ``blob`` need the index loaded."""
    if kind not in CAT_KINDS:
        raise InvalidArgument(f"cannot cat {kind!r}: choose {', '.join(CAT_KINDS)}")
    if kind == "config":
        if ref:
            raise InvalidArgument("cat config takes no id")
        return json.dumps(asdict(repo.config)).encode()
    if not ref:
        raise InvalidArgument(f"cat {kind} needs an id")
    if kind == "index":
        return repo.load_document("index", _unique(repo, "index", ref))
    if kind == "key":
        return repo.store.get(f"keys/{_unique(repo, 'keys', ref)}")
    if kind == "snapshot":
        if ref == "latest":
            return repo.load_document("snapshots", find_snapshot(repo.list_snapshots(), ref).id)
        return repo.load_document("snapshots", _unique(repo, "snapshots", ref))
    if kind == "tree":
        return _blob(repo, _tree_id(repo, ref), BlobType.TREE)
    return _blob(repo, ref, None)


def _unique(repo: Repository, folder: str, ref: str) -> str:
    ids = [info.key.removeprefix(f"{folder}/") for info in repo.store.list(f"{folder}/")]
    matches = [i for i in ids if i.startswith(ref.lower())]
    what = folder.removesuffix("s")
    if not matches:
        raise InvalidArgument(f"no {what} {ref!r} in the repository")
    if len(matches) > 1:
        raise InvalidArgument(f"{what} id prefix {ref!r} is ambiguous: use more characters")
    return matches[0]


def _tree_id(repo: Repository, ref: str) -> str:
    """A tree id, or the tree of ``SNAPSHOT`` or of the directory ``SNAPSHOT:/path``."""
    if _BLOB_ID.fullmatch(ref.lower()) and bytes.fromhex(ref) in repo.index:
        return ref.lower()
    snapshot_ref, _, path = ref.partition(":")
    snapshot = find_snapshot(repo.list_snapshots(), snapshot_ref)
    node = find_node(repo, snapshot, path) if path.rstrip("/") else None
    if node is None:
        return snapshot.tree
    if node.type != "dir" or not node.subtree:
        raise InvalidArgument(f"{path} in snapshot {snapshot.short_id} is not a directory")
    return node.subtree


def _blob(repo: Repository, ref: str, want: BlobType | None) -> bytes:
    if not _BLOB_ID.fullmatch(ref.lower()):
        raise InvalidArgument(f"invalid blob id {ref!r}: 64 hex digits")
    blob_id = bytes.fromhex(ref)
    loc = repo.index.get(blob_id)
    if loc is None:
        raise InvalidArgument(f"no blob {ref} in the index")
    if want is not None and loc.type is not want:
        raise InvalidArgument(f"{ref} is a {loc.type.name.lower()} blob, not a tree")
    return repo.load_blob(blob_id)
