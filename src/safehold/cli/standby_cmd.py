"""``standby``: a hot standby of a service's PostgreSQL under Patroni, etcd and HAProxy."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config

__all__ = ["standby_app"]

standby_app = typer.Typer(
    help="Hot standby: Patroni and HAProxy configuration from the policy, status, drills."
)
app.add_typer(standby_app, name="standby")

ServiceArg = Annotated[str, typer.Argument(help="The service whose standby table to use.")]


@standby_app.command("config")
def config_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Where the files are written.")
    ],
    config: ConfigOpt = None,
    haproxy: Annotated[
        str, typer.Option("--haproxy", metavar="PROGRAM", help="HAProxy, to check its file.")
    ] = "haproxy",
    patroni: Annotated[
        str | None,
        typer.Option(
            "--patroni",
            metavar="PROGRAM",
            help="Patroni, to check each node's file (default: safehold's own, else PATH).",
        ),
    ] = None,
) -> None:
    """Write each node's Patroni YAML and haproxy.cfg for SERVICE's standby table, checked
    by `haproxy -c` and `patroni --validate-config` first: a file they refuse is not
    written.

    The files hold no password: Patroni reads PATRONI_SUPERUSER_PASSWORD,
    PATRONI_REPLICATION_PASSWORD and PATRONI_REWIND_PASSWORD from its environment.
    """
    from safehold.dr.standby.config import HAPROXY_FILE, resolve_setup, write_configs
    from safehold.dr.standby.validate import find_patroni, validate_haproxy, validate_patroni

    s = settings(ctx)
    path, policy = load_config(config)
    setup = resolve_setup(policy, service)
    out_dir.mkdir(parents=True, exist_ok=True)
    checks = []
    with tempfile.TemporaryDirectory(prefix=".safehold-standby-", dir=out_dir) as tmp:
        written = write_configs(setup, Path(tmp), path, out_dir)
        for file in written:
            shown = out_dir / file.name
            if file.name == HAPROXY_FILE:
                checks.append(validate_haproxy(file, shown, haproxy))
            else:
                checks.append(validate_patroni(setup, file, shown, patroni or find_patroni()))
        for file in written:  # all or nothing
            file.replace(out_dir / file.name)
    if s.json:
        print_json(
            {
                "message_type": "standby_config",
                "service": service,
                "scope": setup.scope,
                "files": [
                    {"path": c.file, "checker": c.checker, "checked": c.checked, "note": c.note}
                    for c in checks
                ],
            }
        )
    elif not s.quiet:
        for c in checks:
            verdict = "valid" if c.checked else "NOT CHECKED"
            note = f" ({c.note})" if c.note else ""
            out().print(f"{c.file}: {verdict} by {c.checker}{note}", markup=False)
