"""``cat``: print one repository object, decrypted, for debugging (restic's ``cat``)."""

from __future__ import annotations

import base64
import json
import sys
from typing import Annotated

import typer

from safehold.archive.cat import CAT_KINDS, NEEDS_INDEX, cat_object
from safehold.cli.app import app, settings
from safehold.cli.output import print_json
from safehold.errors import InvalidArgument

__all__ = ["cat"]


@app.command()
def cat(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(CAT_KINDS)}.")],
    object_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[ID]",
            help="Id or unique prefix ('latest' for a snapshot; SNAPSHOT[:/dir] for a tree).",
        ),
    ] = None,
) -> None:
    """Print a repository object as JSON (see docs/FORMAT.md); a blob's raw bytes."""
    s = settings(ctx)
    if kind not in CAT_KINDS:  # before asking for a password
        raise InvalidArgument(f"cannot cat {kind!r}: choose {', '.join(CAT_KINDS)}")
    repo = s.open_repository(load_index=kind in NEEDS_INDEX, lock="shared")
    data = cat_object(repo, kind, object_id)
    if kind == "blob":
        if s.json:
            print_json({"id": object_id, "size": len(data), "data_b64": base64.b64encode(data)})
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        return
    doc = json.loads(data)
    if s.json:
        print_json(doc)
    else:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
