"""Sealing (AES-256-GCM), keyed blob ids, content hashes, payload compression, key files."""

from __future__ import annotations

import json
import os

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.errors import CorruptObject
from safehold.repo.compression import compress, decompress
from safehold.repo.config import RepoConfig, read_version
from safehold.repo.crypto import NONCE_SIZE, OVERHEAD, MasterKey, content_hash
from safehold.repo.keys import KeyFile, make_key_file, unwrap

from ..conftest import CHEAP_KDF, PASSWORD

KEY = MasterKey(bytes(range(32)), bytes(range(32, 64)))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096))
def test_seal_open_round_trip(plaintext: bytes) -> None:
    sealed = KEY.seal(plaintext)
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert KEY.open(sealed, "x") == plaintext
    assert KEY.open(memoryview(sealed), "x") == plaintext


def test_sealed_layout_is_nonce_ciphertext_tag_without_associated_data() -> None:
    sealed = KEY.seal(b"attack at dawn")
    plain = AESGCM(KEY.encryption).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], None)
    assert plain == b"attack at dawn"


def test_each_seal_uses_a_fresh_nonce() -> None:
    a, b = KEY.seal(b"same"), KEY.seal(b"same")
    assert a != b
    assert a[:NONCE_SIZE] != b[:NONCE_SIZE]


@pytest.mark.parametrize("position", [0, NONCE_SIZE, NONCE_SIZE + 3, -1])
def test_tampering_is_detected(position: int) -> None:
    sealed = bytearray(KEY.seal(b"sixteen byte msg"))
    sealed[position] ^= 0x01
    with pytest.raises(CorruptObject, match="authentication failed") as excinfo:
        KEY.open(bytes(sealed), "data/ab/abc")
    assert "data/ab/abc" in str(excinfo.value)


def test_truncated_sealed_data_is_detected() -> None:
    sealed = KEY.seal(b"payload")
    with pytest.raises(CorruptObject, match="too short"):
        KEY.open(sealed[: OVERHEAD - 1], "x")
    with pytest.raises(CorruptObject, match="authentication failed"):
        KEY.open(sealed[:-1], "x")


def test_wrong_key_cannot_open() -> None:
    other = MasterKey.generate()
    with pytest.raises(CorruptObject):
        other.open(KEY.seal(b"secret"), "x")


def test_generated_keys_are_random_and_32_bytes() -> None:
    a, b = MasterKey.generate(), MasterKey.generate()
    assert len(a.encryption) == len(a.id_key) == 32
    assert a != b
    assert a.encryption != a.id_key


def test_blob_ids_are_keyed_blake3() -> None:
    data = b"some file content"
    assert KEY.blob_id(data) == blake3.blake3(data, key=KEY.id_key).digest()
    assert len(KEY.blob_id(data)) == 32
    assert KEY.blob_id(data) != blake3.blake3(data).digest()
    assert KEY.blob_id(data) != MasterKey.generate().blob_id(data)
    assert KEY.blob_id(data) == KEY.blob_id(memoryview(data))
    assert KEY.blob_id(data) != KEY.blob_id(data + b"!")


def test_content_hash_is_plain_blake3_hex() -> None:
    assert content_hash(b"abc") == blake3.blake3(b"abc").hexdigest()
    assert len(content_hash(b"")) == 64


# ---- payloads -----------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048) | st.builds(lambda n: b"ab" * n, st.integers(0, 5000)))
def test_compress_round_trip(data: bytes) -> None:
    for level in (0, 3):
        payload = compress(data, level)
        assert payload[0] in (0, 1)
        assert decompress(payload, len(data), "x", 1 << 20) == data
        assert decompress(payload, None, "x", 1 << 20) == data


def test_compression_only_when_it_helps() -> None:
    text = b"hello world " * 100
    assert compress(text, 3)[0] == 1
    assert len(compress(text, 3)) < len(text)
    assert compress(text, 0) == b"\x00" + text
    noise = os.urandom(1000)
    assert compress(noise, 3) == b"\x00" + noise
    assert compress(b"short" * 10, 3)[0] == 0  # 50 bytes: not worth a zstd frame


def test_decompress_rejects_bad_payloads() -> None:
    with pytest.raises(CorruptObject, match="empty payload"):
        decompress(b"", None, "x", 1 << 20)
    with pytest.raises(CorruptObject, match="unknown compression flag 7"):
        decompress(b"\x07abc", None, "x", 1 << 20)
    with pytest.raises(CorruptObject, match="zstd"):
        decompress(b"\x01not a zstd frame", 10, "x", 1 << 20)
    with pytest.raises(CorruptObject, match="expected 5 bytes, got 3"):
        decompress(b"\x00abc", 5, "x", 1 << 20)


# ---- key files and config -------------------------------------------------------------


def test_key_file_round_trip_and_unwrap() -> None:
    kf = make_key_file(KEY, PASSWORD, CHEAP_KDF)
    raw = kf.to_bytes()
    doc = json.loads(raw)
    assert doc["kdf"] == "argon2id"
    assert doc["kdf_params"] == {"memory_kib": 256, "iterations": 1, "parallelism": 1}
    again = KeyFile.from_bytes(raw, "keys/x")
    assert again == kf
    assert unwrap(again, PASSWORD) == KEY
    assert unwrap(again, b"wrong password") is None


def test_two_key_files_for_one_key_differ() -> None:
    a, b = make_key_file(KEY, PASSWORD, CHEAP_KDF), make_key_file(KEY, PASSWORD, CHEAP_KDF)
    assert a.salt != b.salt
    assert a.sealed_master != b.sealed_master
    assert unwrap(a, PASSWORD) == unwrap(b, PASSWORD) == KEY


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"version": 1}', b'{"version": 2, "kdf": "argon2id"}'],
)
def test_malformed_key_files_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptObject):
        KeyFile.from_bytes(raw, "keys/x")


def test_config_round_trip_with_version_in_clear() -> None:
    config = RepoConfig.generate(chunk_min=4096, chunk_avg=8192, chunk_max=65536)
    raw = config.to_bytes(KEY)
    assert read_version(raw) == 1
    assert json.loads(raw)["version"] == 1
    assert b"chunk" not in raw  # parameters are sealed
    assert RepoConfig.from_bytes(raw, KEY) == config
    assert 0 <= config.chunk_seed < 2**63
    with pytest.raises(CorruptObject):
        RepoConfig.from_bytes(raw, MasterKey.generate())


@pytest.mark.parametrize("raw", [b"junk", b'{"version": 2, "data": ""}', b"{}"])
def test_read_version_refuses_unknown_configs(raw: bytes) -> None:
    with pytest.raises(CorruptObject):
        read_version(raw)
