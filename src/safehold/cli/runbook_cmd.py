"""``runbook``: the manual recovery procedure of a service (dr/runbook.py)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import print_json
from safehold.cli.policy_file import ConfigOpt, load_config

__all__ = ["runbook"]


@app.command("runbook")
def runbook(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service of the policy.")],
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="md (Markdown) or html.")] = "md",
    stored: Annotated[
        bool,
        typer.Option(
            "--stored",
            help="The newest runbook the daemon stored in --repo (no policy file needed).",
        ),
    ] = False,
) -> None:
    """Print SERVICE's recovery procedure, generated from the policy: the exact commands in
    order, from the repository, each replica, an external disk, and without safehold."""
    from safehold.dr.runbook import build_runbook, latest_stored, render

    s = settings(ctx)
    if stored:
        text = latest_stored(s.open_repository(load_index=False), service)
        if s.json:
            print_json({"service": service, "runbook": text})
        else:
            sys.stdout.write(text)
        return
    path, policy = load_config(config)
    book = build_runbook(policy, path, service)
    if s.json:
        print_json(
            {
                "service": service,
                "sections": [vars(section) for section in book.sections],
                "text": render(book, "md"),
            }
        )
        return
    sys.stdout.write(render(book, fmt))
