"""Packs: blobs back to back, a sealed header, a 6-byte trailer (docs/FORMAT.md §6)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.errors import CorruptObject
from safehold.repo.compression import compress, decompress
from safehold.repo.crypto import MasterKey, content_hash
from safehold.repo.pack import BlobType, PackEntry, PackWriter, parse_header, tail_length

KEY = MasterKey(b"\x01" * 32, b"\x02" * 32)

blob_lists = st.lists(
    st.tuples(st.sampled_from(list(BlobType)), st.binary(max_size=600)), min_size=0, max_size=12
)


def build_pack(blobs: list[tuple[BlobType, bytes]]) -> tuple[str, bytes, list[PackEntry]]:
    writer = PackWriter()
    for blob_type, data in blobs:
        writer.add(blob_type, KEY.blob_id(data), KEY.seal(compress(data, 3)), len(data))
    return writer.finish(KEY)


@settings(max_examples=60, deadline=None)
@given(blob_lists)
def test_any_blobs_round_trip_through_a_pack(blobs: list[tuple[BlobType, bytes]]) -> None:
    pack_id, data, entries = build_pack(blobs)
    assert pack_id == content_hash(data)
    parsed = parse_header(KEY, data, len(data), "pack")
    assert parsed == entries
    assert [(e.type, e.id, e.raw_length) for e in parsed] == [
        (t, KEY.blob_id(b), len(b)) for t, b in blobs
    ]
    for entry, (_, plain) in zip(parsed, blobs, strict=True):
        sealed = data[entry.offset : entry.offset + entry.length]
        assert decompress(KEY.open(sealed, "blob"), entry.raw_length, "blob", 1 << 24) == plain
    # only the tail is needed: as much as tail_length() says
    tail_len = tail_length(data[-6:], "pack")
    assert parse_header(KEY, data[-tail_len:], len(data), "pack") == entries


@settings(max_examples=30, deadline=None)
@given(blob_lists)
def test_pack_layout_is_as_documented(blobs: list[tuple[BlobType, bytes]]) -> None:
    _, data, entries = build_pack(blobs)
    header_len, version, key_type = struct.unpack("<IBB", data[-6:])
    assert (version, key_type) == (1, 0)
    header = KEY.open(data[-6 - header_len : -6], "header")
    (count,) = struct.unpack_from("<I", header)
    assert count == len(blobs)
    assert len(header) == 4 + 41 * count
    offset = 0
    for i, entry in enumerate(entries):
        btype, length, raw_length, blob_id = struct.unpack_from("<BII32s", header, 4 + 41 * i)
        assert (btype, length, raw_length, blob_id, offset) == (
            entry.type,
            entry.length,
            entry.raw_length,
            entry.id,
            entry.offset,
        )
        offset += length
    assert offset + header_len + 6 == len(data)


def test_writer_is_empty_after_finish() -> None:
    writer = PackWriter()
    writer.add(BlobType.DATA, KEY.blob_id(b"a"), KEY.seal(compress(b"a", 3)), 1)
    assert len(writer) > 0
    writer.finish(KEY)
    assert len(writer) == 0
    assert writer.entries == []


@settings(max_examples=40, deadline=None)
@given(blob_lists.filter(bool), st.data())
def test_truncated_packs_are_corrupt(
    blobs: list[tuple[BlobType, bytes]], data: st.DataObject
) -> None:
    _, pack, _ = build_pack(blobs)
    cut = data.draw(st.integers(0, len(pack) - 1), label="keep")
    with pytest.raises(CorruptObject):
        parse_header(KEY, pack[:cut], cut, "pack")  # end missing
    with pytest.raises(CorruptObject):
        parse_header(KEY, pack[len(pack) - cut :], cut, "pack")  # start missing


@settings(max_examples=40, deadline=None)
@given(blob_lists.filter(bool), st.data())
def test_a_flipped_byte_in_header_or_trailer_is_detected(
    blobs: list[tuple[BlobType, bytes]], data: st.DataObject
) -> None:
    _, pack, _ = build_pack(blobs)
    header_len = struct.unpack("<I", pack[-6:-2])[0]
    position = data.draw(st.integers(len(pack) - 6 - header_len, len(pack) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(pack)
    damaged[position] ^= 1 << bit
    with pytest.raises(CorruptObject):
        parse_header(KEY, bytes(damaged), len(damaged), "pack")


def test_a_flipped_byte_in_a_blob_is_detected_when_the_blob_is_read() -> None:
    _, pack, entries = build_pack([(BlobType.DATA, b"x" * 100), (BlobType.TREE, b"{}")])
    damaged = bytearray(pack)
    damaged[entries[1].offset + 20] ^= 0xFF
    assert parse_header(KEY, bytes(damaged), len(damaged), "pack") == entries  # header intact
    e = entries[1]
    with pytest.raises(CorruptObject, match="authentication failed"):
        KEY.open(bytes(damaged[e.offset : e.offset + e.length]), "blob")


def test_corruption_errors_name_the_pack() -> None:
    _, pack, _ = build_pack([(BlobType.DATA, b"abc")])
    with pytest.raises(CorruptObject, match="data/ab/abcd"):
        parse_header(KEY, pack[:3], 3, "data/ab/abcd")
    with pytest.raises(CorruptObject, match="no trailer"):
        tail_length(b"\x00", "data/ab/abcd")


def test_unknown_pack_version_or_key_type_is_refused() -> None:
    _, pack, _ = build_pack([(BlobType.DATA, b"abc")])
    for index, value in ((-2, 2), (-1, 1)):
        damaged = bytearray(pack)
        damaged[index] = value
        with pytest.raises(CorruptObject, match="unsupported pack version"):
            parse_header(KEY, bytes(damaged), len(damaged), "pack")


def test_a_pack_sealed_with_another_key_does_not_open() -> None:
    _, pack, _ = build_pack([(BlobType.DATA, b"abc")])
    with pytest.raises(CorruptObject, match="authentication failed"):
        parse_header(MasterKey.generate(), pack, len(pack), "pack")
