"""The repository: keys, config, index and snapshots on an object store.

Object keys: ``config``, ``keys/<id>``, ``data/<2 hex>/<pack id>``, ``index/<id>``,
``snapshots/<id>``. Packs, indexes and snapshots are written once and never modified;
their id is the BLAKE3 hash of their stored bytes, so damage is detected before decryption.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from safehold.errors import (
    AlreadyExists,
    CorruptObject,
    InvalidArgument,
    LogConflict,
    NotARepository,
    NotFound,
    RepositoryExists,
    RepositoryMissing,
    SafeholdError,
    WrongPassword,
)
from safehold.repo.cache import CACHED_KINDS, DocumentCache
from safehold.repo.compression import compress, decompress
from safehold.repo.config import RepoConfig, read_version
from safehold.repo.crypto import MasterKey, content_hash
from safehold.repo.index import BlobLocation, Index, encode_index
from safehold.repo.keycache import KeyCache
from safehold.repo.keys import DEFAULT_KDF, KdfParams, KeyFile, make_key_file, unwrap
from safehold.repo.limits import MAX_DOCUMENT_BYTES, MAX_LOG_FILE_BYTES, MAX_TREE_BYTES
from safehold.repo.pack import BlobType, PackEntry, parse_header, tail_length
from safehold.repo.snapshot import Snapshot
from safehold.repo.writer import BlobWriter
from safehold.storage.base import ObjectStore
from safehold.storage.local import LocalStore

__all__ = ["KeyInfo", "Repository", "pack_key", "tree_text"]

JSON_COMPRESSION = 3
MAX_COALESCED_READ = 8 << 20
LOAD_THREADS = 8


def pack_key(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    created: str
    hostname: str
    username: str
    current: bool


class Repository:
    def __init__(self, store: ObjectStore, key: MasterKey, config: RepoConfig, key_id: str) -> None:
        self.store = store
        self.key = key
        self.config = config
        self.key_id = key_id
        self.index = Index()
        self.damaged_snapshots: list[SafeholdError] = []
        self.damaged_indexes: list[SafeholdError] = []
        self.cache: DocumentCache | None = None  # set for remote stores (repo/cache.py)
        self._index_lock = threading.Lock()
        self._trailers_checked: set[str] = set()

    # ---- creating and opening -------------------------------------------------------

    @classmethod
    def init(
        cls,
        store: ObjectStore,
        password: bytes,
        kdf: KdfParams = DEFAULT_KDF,
        **config_overrides: int,
    ) -> Repository:
        if store.exists() and _has_config(store):
            raise RepositoryExists(store.location)
        store.create()
        key = MasterKey.generate()
        config = RepoConfig.generate(**config_overrides)
        key_file = make_key_file(key, password, kdf).to_bytes()
        key_id = content_hash(key_file)
        store.put(f"keys/{key_id}", key_file, if_absent=True)
        try:
            store.put("config", config.to_bytes(key), if_absent=True)
        except AlreadyExists:
            store.delete(f"keys/{key_id}")
            raise RepositoryExists(store.location) from None
        return cls(store, key, config, key_id)

    @classmethod
    def open(
        cls, store: ObjectStore, password: bytes, key_cache: KeyCache | None = None
    ) -> Repository:
        """Open with the first key file ``password`` unwraps; ``key_cache`` spares the
        password's KDF when it holds this repository's key for this password (checked)."""
        if not store.exists():
            raise RepositoryMissing(store.location)
        try:
            raw_config = store.get("config")
        except NotFound:
            raise NotARepository(store.location, "it has no config object") from None
        try:
            read_version(raw_config)
        except CorruptObject as exc:
            raise NotARepository(store.location, exc.args[1]) from None
        if key_cache is not None and (
            cached := _open_cached(store, raw_config, password, key_cache)
        ):
            return cls(store, *cached)
        damaged: list[CorruptObject] = []
        for info in store.list("keys/"):
            key_id = info.key.removeprefix("keys/")
            try:
                key_file = KeyFile.from_bytes(store.get(info.key), info.key)
            except CorruptObject as exc:  # one damaged key file must not lock out the others
                damaged.append(exc)
                continue
            key = unwrap(key_file, password)
            if key is not None:
                config = RepoConfig.from_bytes(raw_config, key)
                if key_cache is not None:
                    key_cache.save(raw_config, password, key, key_id)
                return cls(store, key, config, key_id)
        if damaged and len(damaged) == len(list(store.list("keys/"))):
            raise damaged[0]
        if not damaged and not any(True for _ in store.list("keys/")):
            raise NotARepository(store.location, "it has no key files (keys/ is empty)")
        raise WrongPassword(store.location)

    # ---- sealed JSON documents (index, snapshots) ---------------------------------------

    def save_document(self, kind: str, payload: bytes) -> str:
        sealed = self.key.seal(compress(payload, JSON_COMPRESSION))
        object_id = content_hash(sealed)
        self.store.put(f"{kind}/{object_id}", sealed, if_absent=True)
        if self.cache is not None and kind in CACHED_KINDS:
            self.cache.put(kind, object_id, sealed)
        return object_id

    def load_document(self, kind: str, object_id: str) -> bytes:
        name = f"{kind}/{object_id}"
        cached = self.cache is not None and kind in CACHED_KINDS
        sealed = self.cache.get(kind, object_id) if self.cache is not None and cached else None
        if sealed is None:
            sealed = self.store.get(name)
            if content_hash(sealed) != object_id:
                raise CorruptObject(name, "content does not match its id")
            if self.cache is not None and cached:
                self.cache.put(kind, object_id, sealed)
        return decompress(self.key.open(sealed, name), None, name, MAX_DOCUMENT_BYTES[kind])

    # ---- database log files (WAL, binlogs): one sealed object each, named by the database

    def put_log_file(self, key: str, data: bytes) -> bool:
        """Store a log file once; False if the same bytes were already there.

        Raises ``LogConflict`` if the name holds other bytes: a log is never overwritten,
        and two clusters or servers writing one name is an error an operator must see.
        """
        try:
            self.store.put(key, self.key.seal(compress(data, JSON_COMPRESSION)), if_absent=True)
            return True
        except AlreadyExists:
            pass
        try:
            existing = self.get_log_file(key)
        except CorruptObject:
            raise LogConflict(key) from None
        if existing != data:
            raise LogConflict(key)
        return False

    def get_log_file(self, key: str) -> bytes:
        """A log file's bytes (``NotFound`` if absent, ``CorruptObject`` if damaged)."""
        return decompress(self.key.open(self.store.get(key), key), None, key, MAX_LOG_FILE_BYTES)

    def _ids(self, kind: str) -> list[str]:
        ids = [info.key.removeprefix(f"{kind}/") for info in self.store.list(f"{kind}/")]
        if self.cache is not None and kind in CACHED_KINDS:
            self.cache.keep_only(kind, set(ids))
        return ids

    # ---- index ------------------------------------------------------------------------

    def load_index(self) -> None:
        """Every index document; fetched by a few threads, since each is a request.

        A damaged document adds nothing and goes to ``damaged_indexes``: the others still
        serve, and whatever only it located is reported missing where it is needed.
        """
        ids = self._ids("index")

        def load(index_id: str) -> Any:
            try:
                return self.load_index_document(index_id)
            except (CorruptObject, NotFound) as exc:
                return exc

        self.damaged_indexes = []
        with ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="index") as pool:
            for index_id, doc in zip(ids, pool.map(load, ids), strict=True):
                try:
                    if isinstance(doc, SafeholdError):
                        raise doc
                    self.index.add_document(doc, f"index/{index_id}")
                except (CorruptObject, NotFound) as exc:
                    self.damaged_indexes.append(exc)

    def load_index_document(self, index_id: str) -> Any:
        """One index document, decoded but not yet checked field by field."""
        try:
            return json.loads(self.load_document("index", index_id))
        except ValueError:
            raise CorruptObject(f"index/{index_id}", "not an index document") from None

    def save_index(self, packs: dict[str, list[PackEntry]]) -> str | None:
        return self.save_document("index", encode_index(packs)) if packs else None

    def read_pack_header(self, pack_id: str) -> list[PackEntry]:
        name = pack_key(pack_id)
        size = self.store.stat(name).size
        trailer = self.store.get(name, (max(0, size - 6), min(6, size)))
        tail_len = tail_length(trailer, name)
        if tail_len > size:
            raise CorruptObject(name, "truncated pack: header longer than the pack")
        tail = self.store.get(name, (size - tail_len, tail_len))
        return parse_header(self.key, tail, size, name)

    def check_trailer(self, pack_id: str, size: int | None = None) -> None:
        """Refuse a pack whose trailer names another version or key type (FORMAT.md §6),
        once per pack and command; blobs are read by the index, which does not say.

        On a local disk only: there it costs a 6-byte read; on an object store a request
        per pack (twice the requests of a restore), and a blob of another format fails
        its authentication or its id check anyway. Whole-pack reads check it everywhere.
        """
        if pack_id in self._trailers_checked or not isinstance(self.store, LocalStore):
            return
        name = pack_key(pack_id)
        if size is None:
            size = self.store.stat(name).size
        tail_length(self.store.get(name, (max(0, size - 6), min(6, size))), name)
        self._trailers_checked.add(pack_id)

    # ---- blobs ------------------------------------------------------------------------

    def locate(self, blob_id: bytes) -> BlobLocation:
        loc = self.index.get(blob_id)
        if loc is None:
            raise CorruptObject(f"blob {blob_id.hex()}", "not in the index (data lost?)")
        return loc

    def load_blob(self, blob_id: bytes) -> bytes:
        loc = self.locate(blob_id)
        name = pack_key(loc.pack)
        try:
            self.check_trailer(loc.pack)
            sealed = self.store.get(name, (loc.offset, loc.length))
        except NotFound:
            raise CorruptObject(
                name, f"pack is missing (needed for blob {blob_id.hex()})"
            ) from None
        return self.decode_blob(blob_id, loc, sealed)

    def load_blobs(self, blob_ids: list[bytes]) -> dict[bytes, bytes | SafeholdError]:
        """Several blobs, with one ranged read per run of neighbours in a pack.

        Small files' blobs lie side by side in their packs; reading them together saves a
        request (on a local disk, an open, a read and a close) per blob. A blob that
        cannot be read maps to its error, so the others still serve.
        """
        result: dict[bytes, bytes | SafeholdError] = {}
        located = []
        for blob_id in dict.fromkeys(blob_ids):
            try:
                located.append((self.locate(blob_id), blob_id))
            except CorruptObject as exc:
                result[blob_id] = exc
        located.sort(key=lambda x: (x[0].pack, x[0].offset))
        run: list[tuple[BlobLocation, bytes]] = []
        for loc, blob_id in located:
            if run and (
                loc.pack != run[-1][0].pack
                or loc.offset != run[-1][0].offset + run[-1][0].length
                or loc.offset + loc.length - run[0][0].offset > MAX_COALESCED_READ
            ):
                self._load_run(run, result)
                run = []
            run.append((loc, blob_id))
        if run:
            self._load_run(run, result)
        return result

    def _load_run(
        self, run: list[tuple[BlobLocation, bytes]], result: dict[bytes, bytes | SafeholdError]
    ) -> None:
        first, last = run[0][0], run[-1][0]
        name = pack_key(first.pack)
        try:
            self.check_trailer(first.pack)
            data = self.store.get(name, (first.offset, last.offset + last.length - first.offset))
        except NotFound:
            for _, blob_id in run:
                result[blob_id] = CorruptObject(
                    name, f"pack is missing (needed for blob {blob_id.hex()})"
                )
            return
        except SafeholdError as exc:
            for _, blob_id in run:
                result[blob_id] = exc
            return
        view = memoryview(data)  # a slice of a view is not a copy; one of bytes is
        for loc, blob_id in run:
            start = loc.offset - first.offset
            try:
                result[blob_id] = self.decode_blob(blob_id, loc, view[start : start + loc.length])
            except CorruptObject as exc:
                result[blob_id] = exc

    def blob_limit(self, loc: BlobLocation) -> int:
        """The largest plaintext a blob may have: a chunk, or a directory document."""
        return self.config.chunk_max if loc.type is BlobType.DATA else MAX_TREE_BYTES

    def decode_blob(self, blob_id: bytes, loc: BlobLocation, sealed: bytes | memoryview) -> bytes:
        """Decrypt, decompress and verify one blob read from its pack.

        ``sealed`` may be a memoryview into a larger read, so that readers of many blobs
        per request do not copy each blob out first.
        """
        what = f"{pack_key(loc.pack)} (blob {blob_id.hex()})"
        if len(sealed) != loc.length:
            raise CorruptObject(what, "truncated pack")
        data = decompress(self.key.open(sealed, what), loc.raw_length, what, self.blob_limit(loc))
        if self.key.blob_id(data) != blob_id:
            raise CorruptObject(what, "content does not match its id")
        return data

    @contextmanager
    def writer(
        self, workers: int | None = None, before_index: Callable[[], None] | None = None
    ) -> Iterator[BlobWriter]:
        """Save blobs; on a clean exit every pack is written and indexed.

        ``before_index`` runs after the last pack is stored and before its index is: the
        place to check that a lock still holds.

        On failure the packs already written are indexed too (the next backup then need
        not upload them again); if even that fails they leave the in-memory index, so
        nothing later counts on blobs no index file names.
        """
        new_packs: dict[str, list[PackEntry]] = {}

        def indexed(pack_id: str, entries: list[PackEntry]) -> None:
            with self._index_lock:
                new_packs[pack_id] = entries
                self.index.add_pack(pack_id, entries)

        writer = BlobWriter(
            self.store,
            self.key,
            self.index,
            self.config.pack_size,
            self.config.compression_level,
            indexed,
            workers,
        )
        try:
            yield writer
            writer.flush()
        except BaseException:
            writer.close()  # waits for uploads under way, so new_packs is final
            self._index_written_packs(new_packs)
            raise
        finally:
            writer.close()
        try:
            if before_index is not None:
                before_index()
            self.save_index(new_packs)
        except BaseException:
            self.index.remove_packs(set(new_packs))
            raise

    def _index_written_packs(self, packs: dict[str, list[PackEntry]]) -> None:
        try:
            self.save_index(packs)
        except (SafeholdError, OSError):
            self.index.remove_packs(set(packs))

    # ---- trees ------------------------------------------------------------------------

    def load_tree_document(self, tree_id: str) -> dict[str, object]:
        try:
            doc = json.loads(self.load_tree_text(tree_id))
        except ValueError:
            raise CorruptObject(f"tree {tree_id}", "not a tree document") from None
        if not isinstance(doc, dict):
            raise CorruptObject(f"tree {tree_id}", "not a tree document")
        return doc

    def load_tree_text(self, tree_id: str) -> str:
        """A tree document's JSON text, for readers that parse it entry by entry."""
        try:
            blob_id = bytes.fromhex(tree_id)
        except ValueError:
            raise CorruptObject(f"tree {tree_id!r}", "invalid id") from None
        loc = self.locate(blob_id)
        if loc.type is not BlobType.TREE:
            raise CorruptObject(f"tree {tree_id}", "blob is not a tree")
        return tree_text(self.load_blob(blob_id), tree_id)

    # ---- snapshots --------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> str:
        snapshot.id = self.save_document("snapshots", snapshot.to_bytes())
        return snapshot.id

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget one snapshot; its data stays until prune removes what nothing references."""
        self.store.delete(f"snapshots/{snapshot_id}")

    def list_snapshots(self) -> list[Snapshot]:
        """Every readable snapshot, oldest first; damaged ones go to ``damaged_snapshots``."""

        def load(sid: str) -> Snapshot | SafeholdError:
            try:
                return Snapshot.from_bytes(self.load_document("snapshots", sid), sid)
            except (CorruptObject, NotFound) as exc:
                return exc

        with ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="snapshots") as pool:
            loaded = list(pool.map(load, self._ids("snapshots")))
        self.damaged_snapshots = [x for x in loaded if isinstance(x, SafeholdError)]
        snapshots = [x for x in loaded if isinstance(x, Snapshot)]
        return sorted(snapshots, key=lambda s: (s.datetime, s.id))

    # ---- keys -------------------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        result = []
        for key_id in self._ids("keys"):
            kf = KeyFile.from_bytes(self.store.get(f"keys/{key_id}"), f"keys/{key_id}")
            result.append(
                KeyInfo(key_id, kf.created, kf.hostname, kf.username, key_id == self.key_id)
            )
        return result

    def add_key(self, password: bytes, kdf: KdfParams = DEFAULT_KDF) -> str:
        key_file = make_key_file(self.key, password, kdf).to_bytes()
        key_id = content_hash(key_file)
        self.store.put(f"keys/{key_id}", key_file, if_absent=True)
        return key_id

    def remove_key(self, key_id: str) -> str:
        """Remove a key by id or unique prefix; never the one this session opened with."""
        matches = [k for k in self._ids("keys") if k.startswith(key_id)]
        if len(matches) != 1:
            raise InvalidArgument(f"key id {key_id!r} matches {len(matches)} keys")
        if matches[0] == self.key_id:
            raise InvalidArgument("refusing to remove the key in use; open with another password")
        self.store.delete(f"keys/{matches[0]}")
        return matches[0]

    def change_password(self, password: bytes, kdf: KdfParams = DEFAULT_KDF) -> str:
        new_id = self.add_key(password, kdf)
        self.store.delete(f"keys/{self.key_id}")
        self.key_id = new_id
        return new_id


def tree_text(raw: bytes, tree_id: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptObject(f"tree {tree_id}", "not a tree document (not UTF-8)") from None


def _open_cached(
    store: ObjectStore, raw_config: bytes, password: bytes, key_cache: KeyCache
) -> tuple[MasterKey, RepoConfig, str] | None:
    """The cached key, its config and key id, if its key file is still on the store (a
    removed or changed password must stop working) and it authenticates the config."""
    cached = key_cache.load(raw_config, password)
    if cached is None:
        return None
    key, key_id = cached
    try:
        store.stat(f"keys/{key_id}")
        return key, RepoConfig.from_bytes(raw_config, key), key_id
    except (NotFound, CorruptObject):
        key_cache.forget(raw_config)
        return None


def _has_config(store: ObjectStore) -> bool:
    try:
        store.stat("config")
    except NotFound:
        return False
    return True
