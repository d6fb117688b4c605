"""The ``--config`` option and how every policy command reads the file it names."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from safehold.errors import InvalidArgument

if TYPE_CHECKING:
    from safehold.dr.policy import Policy

__all__ = ["ConfigOpt", "load_config"]

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="The policy file (env SAFEHOLD_CONFIG).")
]


def load_config(config: str | None) -> tuple[str, Policy]:
    """The policy file's path and its validated policy; every problem goes to stderr, one
    line each (file:line: key: what was expected), then exit 1."""
    from safehold.dr.load import CONFIG_ENV, PolicyError, load_policy

    path = config or os.environ.get(CONFIG_ENV)
    if not path:
        raise InvalidArgument(f"no policy file given: use --config or {CONFIG_ENV}")
    try:
        return path, load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.stderr.flush()
        raise typer.Exit(1) from None
