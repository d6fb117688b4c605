"""Content-defined chunking (FastCDC with the repository's secret seed)."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.archive.chunker import Chunker
from safehold.repo.config import RepoConfig

MIN, AVG, MAX = 4096, 4096, 65536
CONFIG = RepoConfig(id="test", chunk_min=MIN, chunk_avg=AVG, chunk_max=MAX, chunk_seed=12345)


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def chunk(data: bytes, config: RepoConfig = CONFIG) -> list[bytes]:
    return list(Chunker(config).chunks(io.BytesIO(data)))


class ShortReads(io.RawIOBase):
    """A pipe-like stream: each read returns at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


inputs = st.one_of(
    st.builds(random_bytes, st.integers(0, 2**32), st.integers(0, 300_000)),
    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(0, 200_000)),
    st.binary(max_size=10_000),
)


@settings(max_examples=40, deadline=None)
@given(inputs)
def test_chunks_concatenate_to_the_input_within_size_bounds(data: bytes) -> None:
    chunks = chunk(data)
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= MAX for c in chunks)
    assert all(len(c) >= MIN for c in chunks[:-1])


@settings(max_examples=40, deadline=None)
@given(
    st.builds(random_bytes, st.integers(0, 2**32), st.integers(0, MAX))
    | st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(0, MAX))
    | st.binary(min_size=MIN - 2, max_size=MIN + 2)
)
def test_splitting_in_memory_cuts_like_the_stream(data: bytes) -> None:
    """Small files are split in memory: the same chunks, so they deduplicate alike."""
    assert list(Chunker(CONFIG).split(data)) == chunk(data)


def test_empty_input_gives_no_chunks() -> None:
    assert chunk(b"") == []
    assert list(Chunker(CONFIG).split(b"")) == []


def test_uniform_data_is_cut_at_the_maximum() -> None:
    chunks = chunk(bytes(5 * MAX + 100))
    assert [len(c) for c in chunks] == [MAX] * 5 + [100]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 9000))
def test_short_reads_cut_like_whole_reads(seed: int, step: int) -> None:
    data = random_bytes(seed, 200_000)
    from_pipe = list(Chunker(CONFIG).chunks(ShortReads(data, step)))  # type: ignore[arg-type]
    assert from_pipe == chunk(data)


def test_an_insertion_near_the_start_keeps_most_chunks() -> None:
    data = random_bytes(1, 2 * 1024 * 1024)
    edited = data[:1000] + b"inserted bytes" + data[1000:]
    before, after = chunk(data), chunk(edited)
    assert len(before) > 100
    unchanged = set(before) & set(after)
    assert len(unchanged) >= 0.95 * len(before)
    assert before[-1] == after[-1]


def test_boundaries_depend_on_the_seed() -> None:
    data = random_bytes(2, 512 * 1024)
    assert chunk(data) == chunk(data)
    other = RepoConfig(id="test", chunk_min=MIN, chunk_avg=AVG, chunk_max=MAX, chunk_seed=999)
    a, b = chunk(data), chunk(data, other)
    assert b"".join(b) == data
    assert {len(c) for c in a} != {len(c) for c in b}
    unseeded = RepoConfig(id="test", chunk_min=MIN, chunk_avg=AVG, chunk_max=MAX, chunk_seed=0)
    assert [len(c) for c in chunk(data, unseeded)] != [len(c) for c in a]


def test_mean_chunk_size_is_near_min_plus_avg() -> None:
    """DESIGN.md: pyfastcdc's mean comes out near avg + min."""
    data = random_bytes(3, 4 * 1024 * 1024)
    chunks = chunk(data)
    mean = len(data) / len(chunks)
    assert 0.7 * (MIN + AVG) < mean < 1.3 * (MIN + AVG)
