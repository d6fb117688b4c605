"""Reading safehold.toml: TOML, then the models, then cross-references; every problem at once.

Each problem is one line, ``FILE:LINE: KEY: what was expected``. tomllib gives no
positions, so the line of a key comes from ``tomlpos.key_lines``; pydantic's error
locations are walked along the parsed document to name the key as the file spells it
(``services.sync.sources[0].schedules.full``).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from safehold.dr.fields import describe
from safehold.dr.policy import Policy
from safehold.dr.policy_drill import drill_problems
from safehold.dr.policy_recovery import recovery_problems
from safehold.dr.policy_sources import KINDS
from safehold.dr.standby.policy import standby_problems
from safehold.dr.tomlpos import KeyPath, find_line, key_lines
from safehold.errors import SafeholdError

__all__ = ["CONFIG_ENV", "PolicyError", "Problem", "format_path", "load_policy", "parse_policy"]

CONFIG_ENV = "SAFEHOLD_CONFIG"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a policy file."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        key = f" {self.key}:" if self.key else ""
        line = f"{self.line}:" if self.line else ""  # 0: the file as a whole
        return f"{self.file}:{line}{key} {self.message}"


class PolicyError(SafeholdError):
    """{0}"""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file; ``PolicyError`` lists every problem found."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise PolicyError([Problem(name, 0, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError([Problem(name, line, "", "not UTF-8 text")]) from None
    return parse_policy(text, name)


def parse_policy(text: str, filename: str = "safehold.toml") -> Policy:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line = int(match[1]) if match else 1
        detail = _TOML_POSITION.sub("", message).strip()
        raise PolicyError([Problem(filename, line, "", f"invalid TOML: {detail}")]) from None
    lines = key_lines(text)
    found: dict[tuple[KeyPath, str], None] = {}
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        policy = None
        for error in exc.errors():
            found.setdefault(_locate(error, document), None)
    for problem in _check_references(document):
        found.setdefault(problem, None)
    if found or policy is None:
        problems = sorted(
            Problem(filename, find_line(lines, path), format_path(path), message)
            for path, message in found
        )
        raise PolicyError(problems)
    return policy


def format_path(path: KeyPath) -> str:
    """``services.sync.sources[0].schedules.full``; keys that are not bare are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else f'"{part}"'
            text += f".{key}" if text else key
    return text


# -- pydantic errors --------------------------------------------------------------------


def _locate(error: ErrorDetails, document: dict[str, Any]) -> tuple[KeyPath, str]:
    """(path of the key in the document, message) for one pydantic error."""
    loc = error["loc"]
    path: list[str | int] = []
    node: Any = document
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
        elif i == len(loc) - 1 and error["type"] in ("missing", "extra_forbidden"):
            pass  # the missing key itself
        else:
            continue  # a union tag or validator name pydantic adds: not in the file
        path.append(part)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path.append("kind")  # the source's kind is what is wrong or missing
    return tuple(path), _message(error, loc)


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _message(error: ErrorDetails, loc: tuple[int | str, ...]) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = describe(error.get("input"))
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), _allowed_keys(loc[:-1]))
    if kind == "union_tag_invalid":
        return f"unknown source kind {ctx.get('tag')!r}: expected one of {', '.join(KINDS)}"
    if kind == "union_tag_not_found":
        return f"missing required key (one of {', '.join(KINDS)})"
    simple = {
        "string_type": "a string",
        "int_type": "an integer",
        "bool_type": "true or false",
        "list_type": "an array",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
        "float_type": "a number",
    }
    if kind in simple:
        return f"expected {simple[kind]}, got {got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {got}"
    if kind in ("greater_than_equal", "less_than_equal"):
        sign = ">=" if kind == "greater_than_equal" else "<="
        bound = ctx.get("ge", ctx.get("le"))
        return f"expected a number {sign} {bound}, got {got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    return str(error["msg"])


def _unknown_key(key: str, allowed: list[str]) -> str:
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}expected one of: {', '.join(allowed)})"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at ``loc`` may have, found by walking the models' annotations."""
    tp: Any = Policy
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp):  # the discriminated union of sources: loc names the kind
            members = [m for m in typing.get_args(tp) if _kind_of(m) == part]
            if not members:
                return []
            tp = members[0]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [name for name in tp.model_fields if name != "password"]
    return []


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``| None``."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _kind_of(model: Any) -> str | None:
    field = getattr(model, "model_fields", {}).get("kind")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return str(args[0]) if args else None


# -- references between tables ----------------------------------------------------------


def _check_references(document: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """Services naming repositories, unique source names: what one table cannot check."""
    problems: list[tuple[KeyPath, str]] = []
    repositories = document.get("repositories")
    repo_names = sorted(repositories) if isinstance(repositories, dict) else []
    defined = f"defined: {', '.join(repo_names)}" if repo_names else "none is defined"
    services = document.get("services")
    for name, service in (services or {}).items() if isinstance(services, dict) else ():
        if not isinstance(service, dict):
            continue
        repository = service.get("repository")
        if isinstance(repository, str) and repository not in repo_names:
            problems.append(
                (("services", name, "repository"), f"unknown repository {repository!r} ({defined})")
            )
        elif repository is None and len(repo_names) > 1:
            problems.append(
                (
                    ("services", name, "repository"),
                    f"missing required key: more than one repository is defined ({defined})",
                )
            )
        problems.extend(_duplicate_sources(name, service.get("sources")))
        problems.extend(recovery_problems(name, service))
        problems.extend(standby_problems(name, service))
        problems.extend(drill_problems(name, service))
    for name, repo in (repositories or {}).items() if isinstance(repositories, dict) else ():
        replicas = repo.get("replicas") if isinstance(repo, dict) else None
        seen: dict[str, int] = {}
        for i, replica in enumerate(replicas if isinstance(replicas, list) else []):
            location = replica.get("location") if isinstance(replica, dict) else None
            if not isinstance(location, str):
                continue
            if location == repo.get("location"):
                problems.append(
                    (
                        ("repositories", name, "replicas", i, "location"),
                        "a replica must be in another location than its repository",
                    )
                )
            elif location in seen:
                problems.append(
                    (
                        ("repositories", name, "replicas", i, "location"),
                        f"replica location already given in replicas[{seen[location]}]",
                    )
                )
            seen.setdefault(location, i)
    return problems


def _duplicate_sources(service: str, sources: Any) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    seen: dict[str, int] = {}
    for i, source in enumerate(sources if isinstance(sources, list) else []):
        name = source.get("name") if isinstance(source, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                (
                    ("services", service, "sources", i, "name"),
                    f"source name {name!r} already used by sources[{seen[name]}]",
                )
            )
        seen.setdefault(name, i)
    return problems
