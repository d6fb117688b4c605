"""Content-defined chunking with the repository's secret parameters (FastCDC)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

from safehold.repo.config import RepoConfig

__all__ = ["Chunker"]


class Chunker:
    """Splits streams so that an edit moves only the chunk boundaries near it.

    pyfastcdc reuses its read buffer, so each chunk is copied out before the next read.
    """

    def __init__(self, config: RepoConfig) -> None:
        self._cdc = FastCDC(
            config.chunk_avg,
            min_size=config.chunk_min,
            max_size=config.chunk_max,
            seed=config.chunk_seed,
        )

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        for chunk in self._cdc.cut_stream(stream):
            yield bytes(chunk.data)
