"""The Typer application and the options every command shares."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.models import CommandInfo, TyperInfo

from safehold import __version__
from safehold.cli.context import Settings, parse_wait

__all__ = ["app", "arrange_help", "settings"]

# `safehold --help` lists the commands by what they are for, in this order; a command not
# named here (a new one) comes last, under "More commands".
HELP_PANELS: dict[str, tuple[str, ...]] = {
    "Repository": ("init", "key", "locks", "unlock", "replicate"),
    "Backup and restore": ("backup", "restore", "snapshots", "tag", "forget", "rewrite"),
    "Browse": ("ls", "find", "diff", "dump", "cat", "stats", "mount"),
    "Maintenance": ("check", "repair", "prune"),
    "Databases": ("pg", "mysql", "sqlite", "redis"),
    "Automation": (
        "plan",
        "daemon",
        "status",
        "jobs",
        "cut",
        "cuts",
        "recover",
        "runbook",
        "drill",
        "drills",
        "serve",
        "standby",
    ),
}
MORE_PANEL = "More commands"
GLOBAL_OPTIONS_EPILOG = (
    "Global options may also follow the command: --repo/-r, --password-file/-p, --json,"
    " --quiet/-q, --verbose, --retry-lock, --connections, --no-lock, --no-cache,"
    " --no-key-cache (see `safehold --help`)."
)


def _help_rank(name: str) -> int:
    names = [n for group in HELP_PANELS.values() for n in group]
    return names.index(name) if name in names else len(names)


class _HelpOrderedGroup(TyperGroup):
    """Lists the commands in the order of HELP_PANELS (Typer's lists groups after commands)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(super().list_commands(ctx), key=_help_rank)


app = typer.Typer(
    name="safehold",
    cls=_HelpOrderedGroup,
    help="Encrypted, deduplicated backups and disaster recovery.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (README)
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
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
        typer.Option(
            "--password-file",
            "-p",
            help="Read the password from this file. Order: this, SAFEHOLD_PASSWORD_FILE,"
            " SAFEHOLD_PASSWORD_COMMAND, SAFEHOLD_PASSWORD, a prompt; the first given wins.",
        ),
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
    no_key_cache: Annotated[
        bool,
        typer.Option(
            "--no-key-cache",
            help="pg wal-fetch/wal-push: derive the key from the password on every call"
            " (SAFEHOLD_KEY_CACHE=off does the same).",
        ),
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
        no_key_cache=no_key_cache,
        connections=connections,
    )
    ctx.call_on_close(ctx.obj.close)


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


def arrange_help() -> None:
    """Put the registered commands in their help panels, and tell every command's help that
    the global options may follow it. Runs once the command modules are imported."""
    panel_of = {name: panel for panel, names in HELP_PANELS.items() for name in names}
    infos: list[CommandInfo | TyperInfo] = [*app.registered_commands, *app.registered_groups]
    for info in infos:
        callback = info.callback
        name = str(info.name or (callback.__name__ if callback else "")).replace("_", "-")
        info.rich_help_panel = panel_of.get(name, MORE_PANEL)
    _add_epilog(app)


def _add_epilog(group: typer.Typer) -> None:
    for command in group.registered_commands:
        command.epilog = command.epilog or GLOBAL_OPTIONS_EPILOG
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _add_epilog(sub.typer_instance)
