"""Reading a restore's file contents pack by pack: few large requests, each blob read once.

An object store charges (in money and in server CPU) per request, so the restorer plans a
batch of files first and reads what they need from each pack with as few requests as
possible: the needed blobs of a pack, sorted by offset, are read together when the gap
between them is small (reading a few unneeded bytes is cheaper than another request);
a pack of which only a few small blobs are needed is read in ranges. Each blob is then
decrypted, decompressed and verified once and handed to every place that needs it
(several files, or several offsets of one file).

On remote stores trees are read a whole tree pack at a time: the walk asks for one tree
per directory, and backup keeps trees in packs of their own, so one request replaces a
request per directory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from safehold.errors import CorruptObject, NotFound, SafeholdError
from safehold.repo.index import BlobLocation
from safehold.repo.pack import BlobType, tail_length
from safehold.repo.repository import Repository, pack_key, tree_text
from safehold.storage.local import LocalStore

__all__ = ["BlobRead", "PackRead", "ReadLimits", "TreePacks", "plan_reads", "read_blobs"]


@dataclass(frozen=True)
class ReadLimits:
    """How far to coalesce: unneeded bytes worth reading to save a request, and the
    largest single read (it is held in memory while its blobs are decoded)."""

    max_gap: int
    max_read: int

    @classmethod
    def for_repository(cls, repo: Repository) -> ReadLimits:
        """A local read costs microseconds, a remote request milliseconds of server CPU
        (SeaweedFS: about 3 ms) or a round trip, so remote reads bridge larger gaps.

        8 MiB reads restored the S3 benchmark as fast as whole-pack (16-32 MiB) reads, with
        60-80 MiB less peak memory (bench/RESULTS.md)."""
        local = isinstance(repo.store, LocalStore)
        return cls(max_gap=64 << 10 if local else 1 << 20, max_read=8 << 20)


@dataclass(slots=True)
class BlobRead:
    """One blob to read and every place it goes: (file number in the batch, file offset)."""

    blob_id: bytes
    loc: BlobLocation
    uses: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class PackRead:
    """One request: ``length`` bytes of ``pack`` from ``offset``, holding ``blobs``."""

    pack: str
    offset: int
    length: int
    blobs: list[BlobRead]
    first_file: int  # the lowest file number served: reads run in file order


def plan_reads(
    contents: list[list[bytes]],
    locate: Callable[[bytes], BlobLocation],
    limits: ReadLimits,
) -> tuple[list[PackRead], dict[int, SafeholdError]]:
    """The reads that fill every file of a batch, in the order the files come.

    ``contents`` is each file's blob list. A file naming a blob that is not in the index
    cannot be restored: it maps to that error and none of its blobs are read for it.
    """
    blobs: dict[bytes, BlobRead] = {}
    unusable: dict[int, SafeholdError] = {}
    for number, content in enumerate(contents):
        try:
            located = [(blob_id, locate(blob_id)) for blob_id in content]
        except SafeholdError as exc:
            unusable[number] = exc
            continue
        offset = 0
        for blob_id, loc in located:
            read = blobs.get(blob_id)
            if read is None:
                read = blobs[blob_id] = BlobRead(blob_id, loc)
            read.uses.append((number, offset))
            offset += loc.raw_length
    by_pack: dict[str, list[BlobRead]] = {}
    for read in blobs.values():
        by_pack.setdefault(read.loc.pack, []).append(read)
    reads = [r for pack, rs in by_pack.items() for r in _coalesce(pack, rs, limits)]
    reads.sort(key=lambda r: (r.first_file, r.pack, r.offset))
    return reads, unusable


def _coalesce(pack: str, blobs: list[BlobRead], limits: ReadLimits) -> Iterator[PackRead]:
    """Group a pack's needed blobs into reads: neighbours closer than ``max_gap``, each
    read at most ``max_read`` long (a single larger blob still gets its own read)."""
    blobs.sort(key=lambda b: b.loc.offset)
    run: list[BlobRead] = []
    for blob in blobs:
        if run:
            start, end = run[0].loc.offset, run[-1].loc.offset + run[-1].loc.length
            gap = blob.loc.offset - end
            if gap > limits.max_gap or blob.loc.offset + blob.loc.length - start > limits.max_read:
                yield _read(pack, run)
                run = []
        run.append(blob)
    if run:
        yield _read(pack, run)


def _read(pack: str, run: list[BlobRead]) -> PackRead:
    start, last = run[0].loc.offset, run[-1].loc
    first_file = min(number for blob in run for number, _ in blob.uses)
    return PackRead(pack, start, last.offset + last.length - start, run, first_file)


def read_blobs(
    repo: Repository, read: PackRead
) -> Iterator[tuple[BlobRead, bytes | SafeholdError]]:
    """Each blob of a read, decoded and verified, or the error that names its pack.

    One request; the blobs are decoded one at a time, so at most one decoded blob is held
    beside the read's bytes. A missing pack or a failed request fails every blob of the
    read; a damaged blob (or one past the end of a truncated pack) fails only itself.
    """
    name = pack_key(read.pack)
    try:
        repo.check_trailer(read.pack)
        data = repo.store.get(name, (read.offset, read.length))
    except NotFound:
        for blob in read.blobs:
            yield (
                blob,
                CorruptObject(name, f"pack is missing (needed for blob {blob.blob_id.hex()})"),
            )
        return
    except SafeholdError as exc:
        for blob in read.blobs:
            yield blob, exc
        return
    view = memoryview(data)  # blobs are decoded from slices of the read, not copies
    for blob in read.blobs:
        start = blob.loc.offset - read.offset
        sealed = view[start : start + blob.loc.length]
        try:
            decoded: bytes | SafeholdError = repo.decode_blob(blob.blob_id, blob.loc, sealed)
        except CorruptObject as exc:
            decoded = exc
        yield blob, decoded


class TreePacks:
    """Tree documents, a whole tree pack per request, the packs kept while memory allows.

    The walk loads one tree per directory; on a remote store that was a request per
    directory, in the walk's one thread. Backup writes trees to packs of their own, so a
    restore's trees sit in a few packs. Any failure falls back to the single-blob read,
    which reports the problem as it always has.
    """

    def __init__(self, repo: Repository, budget: int) -> None:
        self._repo = repo
        self._budget = budget
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0

    def load(self, tree_id: str) -> str:
        """A tree document's text (``Repository.load_tree_text``)."""
        try:
            blob_id = bytes.fromhex(tree_id)
            loc = self._repo.locate(blob_id)
            if loc.type is not BlobType.TREE:
                raise CorruptObject(f"tree {tree_id}", "blob is not a tree")
            pack = self._pack(loc.pack)
            sealed = memoryview(pack)[loc.offset : loc.offset + loc.length]
            return tree_text(self._repo.decode_blob(blob_id, loc, sealed), tree_id)
        except (SafeholdError, ValueError):
            return self._repo.load_tree_text(tree_id)

    def _pack(self, pack: str) -> bytes:
        data = self._packs.get(pack)
        if data is not None:
            self._packs.move_to_end(pack)
            return data
        if self._repo.store.stat(pack_key(pack)).size > self._budget:
            raise CorruptObject(pack_key(pack), "larger than the tree packs held")  # one by one
        data = self._repo.store.get(pack_key(pack))
        tail_length(data, pack_key(pack))  # the trailer: a known version and key type
        self._packs[pack] = data
        self._held += len(data)
        while self._held > self._budget and len(self._packs) > 1:
            _, dropped = self._packs.popitem(last=False)
            self._held -= len(dropped)
        return data
