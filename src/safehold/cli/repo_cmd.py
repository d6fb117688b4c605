"""``init`` and ``key``: creating a repository and managing its passwords."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.context import kdf_params, new_password
from safehold.cli.output import out, print_json
from safehold.errors import InvalidArgument, NotFound, RepositoryExists
from safehold.repo.repository import Repository
from safehold.storage import ObjectStore

__all__ = ["key_app"]

KdfMemory = Annotated[
    int | None, typer.Option("--kdf-memory", help="Argon2id memory in KiB (default 65536).")
]
KdfIterations = Annotated[
    int | None, typer.Option("--kdf-iterations", help="Argon2id passes (default 3).")
]
NewPasswordFile = Annotated[
    str | None, typer.Option("--new-password-file", help="Read the new password from a file.")
]

key_app = typer.Typer(help="Manage the passwords (key files) that open the repository.")
app.add_typer(key_app, name="key")


ObjectLockDays = Annotated[
    int | None,
    typer.Option(
        "--object-lock-days",
        min=1,
        help="S3 only: create the bucket with Object Lock and keep every object written"
        " undeletable for N days (GOVERNANCE retention; docs/stores/s3.md).",
    ),
]


@app.command()
def init(
    ctx: typer.Context,
    kdf_memory: KdfMemory = None,
    kdf_iterations: KdfIterations = None,
    object_lock_days: ObjectLockDays = None,
) -> None:
    """Create a new repository; refuses to overwrite an existing one."""
    s = settings(ctx)
    store = s.open_store()
    if object_lock_days is not None:
        _enable_object_lock(store, object_lock_days)
    repo = Repository.init(store, s.password(confirm=True), kdf_params(kdf_memory, kdf_iterations))
    if s.json:
        print_json(
            {"message_type": "initialized", "id": repo.config.id, "repository": store.location}
        )
    elif not s.quiet:
        out().print(f"created safehold repository {repo.config.id[:10]} at {store.location}")


def _enable_object_lock(store: ObjectStore, days: int) -> None:
    """Before anything is written, so that every object of the repository is locked."""
    enable = getattr(store, "enable_object_lock", None)
    if enable is None:
        raise InvalidArgument(
            f"--object-lock-days needs an S3 repository; {store.location} does not support"
            " S3 Object Lock"
        )
    if store.exists():
        try:
            store.stat("config")
        except NotFound:
            pass
        else:
            raise RepositoryExists(store.location)
    enable(days)


@key_app.command("list")
def key_list(ctx: typer.Context) -> None:
    """List the key files; the one that opened this session is marked."""
    s = settings(ctx)
    keys = s.open_repository(load_index=False).list_keys()
    if s.json:
        print_json([vars(k) for k in keys])
        return
    from rich.table import Table

    table = Table("", "ID", "User", "Host", "Created", box=None)
    for k in keys:
        table.add_row("*" if k.current else "", k.id[:8], k.username, k.hostname, k.created[:19])
    out().print(table)


@key_app.command("add")
def key_add(
    ctx: typer.Context,
    new_password_file: NewPasswordFile = None,
    kdf_memory: KdfMemory = None,
    kdf_iterations: KdfIterations = None,
) -> None:
    """Add a password that opens the repository."""
    s = settings(ctx)
    repo = s.open_repository(load_index=False)
    key_id = repo.add_key(new_password(new_password_file), kdf_params(kdf_memory, kdf_iterations))
    _report(s.json, s.quiet, "added", key_id)


@key_app.command("remove")
def key_remove(ctx: typer.Context, key_id: str) -> None:
    """Remove a key by id (or unique prefix); not the one in use."""
    s = settings(ctx)
    removed = s.open_repository(load_index=False).remove_key(key_id)
    _report(s.json, s.quiet, "removed", removed)


@key_app.command("passwd")
def key_passwd(
    ctx: typer.Context,
    new_password_file: NewPasswordFile = None,
    kdf_memory: KdfMemory = None,
    kdf_iterations: KdfIterations = None,
) -> None:
    """Change the password of the key in use."""
    s = settings(ctx)
    repo = s.open_repository(load_index=False)
    key_id = repo.change_password(
        new_password(new_password_file), kdf_params(kdf_memory, kdf_iterations)
    )
    _report(s.json, s.quiet, "changed", key_id)


def _report(as_json: bool, quiet: bool, action: str, key_id: str) -> None:
    if as_json:
        print_json({"message_type": f"key_{action}", "id": key_id})
    elif not quiet:
        out().print(f"key {key_id[:8]} {action}")
