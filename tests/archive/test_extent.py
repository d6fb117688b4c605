"""archive/extent.py: how far shared trees expand, measured each tree once."""

from __future__ import annotations

import pytest

from safehold.archive.extent import bounded, measure_graph
from safehold.errors import CorruptObject, SnapshotTooLarge


def test_shared_trees_are_asked_once_and_counted_per_path() -> None:
    asked: list[str] = []
    graph = {"root": (2, ["a", "a"]), "a": (2, ["b", "b"]), "b": (1, [])}

    def entry(tree: str) -> tuple[int, list[str]]:
        asked.append(tree)
        return graph[tree]

    extent = measure_graph(entry, "root")
    assert sorted(asked) == ["a", "b", "root"]
    assert (extent.entries, extent.depth, extent.stored) == (2 + 2 * (2 + 2 * 1), 2, 5)


def test_a_forged_cycle_is_damage_not_a_hang() -> None:
    graph = {"root": (1, ["a"]), "a": (1, ["root"])}
    with pytest.raises(CorruptObject, match="cycle"):
        measure_graph(graph.__getitem__, "root")


def test_bounded_stops_past_its_limit() -> None:
    assert list(bounded(range(3), 3, "x")) == [0, 1, 2]
    with pytest.raises(SnapshotTooLarge, match="over 3"):
        list(bounded(range(10**12), 3, "x"))
