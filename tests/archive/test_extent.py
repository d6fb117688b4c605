"""archive/extent.py: how far shared trees expand, measured each tree once."""

from __future__ import annotations

import pytest

from safehold.archive.extent import TreeEntries, bounded, measure_graph
from safehold.archive.tree import BadEntry, Node, encode_tree
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


def test_measured_trees_reach_the_walk_parsed_once_within_the_budget() -> None:
    """Measuring then walking reads and parses a small tree once (the walk gets the very
    entries measuring parsed); a tree over the budget is parsed anew, never held."""
    small = encode_tree([Node(b"a", "file"), Node(b"b", "file")]).decode()
    large = encode_tree([Node(b"%05d" % i, "file") for i in range(200)]).decode()
    loads: list[str] = []

    def load(tree: str) -> str:
        loads.append(tree)
        return {"small": small, "large": large}[tree]

    trees = TreeEntries(load, budget=len(small) + 10)
    measured = list(trees.keep("small"))
    assert list(trees.keep("small")) == measured and loads == ["small"]
    walked = list(trees.take("small"))
    assert loads == ["small"] and all(w is m for w, m in zip(walked, measured, strict=True))
    list(trees.keep("large"))
    assert len(list(trees.take("large"))) == 200 and loads == ["small", "large", "large"]
    assert not isinstance(trees.keep("large"), list)  # over the budget: streamed, not held
    list(trees.take("small"))  # handed over once: asked again, it is read again
    assert loads[-1] == "small"


def test_bad_entries_kept_for_the_walk_are_still_reported() -> None:
    text = '{"nodes":[{"name":"a","type":"file"},{"name":"a","type":"file"}]}'
    trees = TreeEntries(lambda _: text)
    assert [type(e) for e in trees.keep("t")] == [Node, BadEntry]
    assert [type(e) for e in trees.take("t")] == [Node, BadEntry]
