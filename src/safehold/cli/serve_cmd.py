"""``serve``: the dashboard and JSON API without the daemon (read-only)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import err, print_json
from safehold.cli.policy_file import ConfigOpt, load_config

__all__ = ["DEFAULT_LISTEN", "serve"]

DEFAULT_LISTEN = "127.0.0.1:8480"


@app.command("serve")
def serve(
    ctx: typer.Context,
    config: ConfigOpt = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help=f"Where to listen (default: [daemon] http, else {DEFAULT_LISTEN}).",
        ),
    ] = None,
) -> None:
    """Serve the dashboard and the JSON API of a policy until Ctrl-C or SIGTERM: the
    protection status, the daemon's job history, snapshots and replicas. Read-only: "back
    up now" needs the daemon ([daemon] http). Same security rules as the daemon's.
    """
    from safehold.dr.fields import OFF  # pydantic: not for `safehold --help`
    from safehold.dr.policy_http import binding_problem
    from safehold.errors import InvalidArgument
    from safehold.service.http.server import build
    from safehold.service.http.state import StatusLoop
    from safehold.service.paths import state_dir

    path, policy = load_config(config)
    daemon = policy.daemon
    address = listen or (daemon.http if daemon.http != OFF else DEFAULT_LISTEN)
    problem = binding_problem(
        address, daemon.http_tls_cert is not None, daemon.http_insecure, daemon.http_auth
    )
    if problem is not None:
        raise InvalidArgument(problem)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    directory = state_dir(policy, path)
    loop = StatusLoop(policy, directory)
    server = build(policy, path, directory, lambda: loop.latest, None, address)
    loop.start()
    if settings(ctx).json:
        print_json({"message_type": "serving", "url": server.url, "config": path})
    else:
        err().print(f"safehold dashboard on {server.url}", markup=False)
    try:
        server.run()
    finally:
        loop.stop()
