"""The Typer application and the options every command shares."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold import __version__
from safehold.cli.context import Settings, parse_wait

__all__ = ["app", "settings"]

app = typer.Typer(
    name="safehold",
    help="Encrypted, deduplicated backups and disaster recovery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"safehold {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    repo: Annotated[
        str | None,
        typer.Option("--repo", "-r", help="Repository location (env SAFEHOLD_REPOSITORY)."),
    ] = None,
    password_file: Annotated[
        str | None,
        typer.Option("--password-file", "-p", help="Read the password from this file."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    retry_lock: Annotated[
        str,
        typer.Option(
            "--retry-lock",
            metavar="DURATION",
            help="Wait up to DURATION (e.g. 30s, 10m, 1h) for a conflicting lock to go.",
        ),
    ] = "0s",
    connections: Annotated[
        int | None,
        typer.Option(
            "--connections",
            min=1,
            help="Parallel requests to the store: pack uploads and HTTP connections"
            " (default 4 for cloud stores, 2 for a directory).",
        ),
    ] = None,
    no_lock: Annotated[
        bool,
        typer.Option("--no-lock", help="Read without a shared lock (read-only storage)."),
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Do not use the local cache of a remote repository."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="On an error, also print what caused it (e.g. the store's reply)."
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Global options may also be given after the command name, as with restic."""
    del version, verbose  # --version: its callback; --verbose: read by cli/main.py
    ctx.obj = Settings(
        repo=repo,
        password_file=password_file,
        json=json,
        quiet=quiet,
        retry_lock=parse_wait(retry_lock),
        no_lock=no_lock,
        no_cache=no_cache,
        connections=connections,
    )
    ctx.call_on_close(ctx.obj.close)


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj
