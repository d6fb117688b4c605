"""What the standby table's parts share: port and HOST:PORT types, hosts that mean
"any", and the check for an entry listed twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from safehold.dr.fields import describe, fail

__all__ = ["WILDCARD_HOSTS", "HostPort", "Port", "Problems", "listed_twice"]

Problems = list[tuple[tuple[Any, ...], str]]  # (key path, message) for dr/load.py

Port = Annotated[int, Field(ge=1, le=65535)]
WILDCARD_HOSTS = frozenset({"0.0.0.0", "*", "::"})  # a server bound there takes every address


def _host_port(value: Any) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise fail(
            "host_port", f"expected HOST:PORT such as '10.0.0.5:2379', got {describe(value)}"
        )
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise fail("host_port", f"expected HOST:PORT with a port from 1 to 65535, got {value!r}")
    return value


HostPort = Annotated[str, BeforeValidator(_host_port)]


def listed_twice(
    base: tuple[Any, ...],
    entries: list[dict[str, Any]],
    kind: str,
    place_key: str,
    place_of: Callable[[dict[str, Any]], Any],
    taken: Callable[[str, Any], str],
) -> Problems:
    """Entries of the array ``base`` with a name or a place (``place_of``, None: unknown)
    an earlier one has: ``kind`` 'node' -> "node 'pg1' is already listed as nodes[0]";
    ``taken(earlier, place)`` says where the place is already used."""
    table = base[-1]
    problems: Problems = []
    names: dict[Any, int] = {}
    places: dict[Any, int] = {}
    for i, entry in enumerate(entries):
        name, place = entry.get("name"), place_of(entry)
        if name in names:
            problems.append(
                (
                    (*base, i, "name"),
                    f"{kind} {name!r} is already listed as {table}[{names[name]}]",
                )
            )
        elif place is not None and place in places:
            problems.append(((*base, i, place_key), taken(f"{table}[{places[place]}]", place)))
        names.setdefault(name, i)
        places.setdefault(place, i)
    return problems
