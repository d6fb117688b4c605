"""``cut`` and ``cuts``: record a consistent cut of a service, list the recorded ones."""

from __future__ import annotations

from typing import Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config

__all__ = ["cut", "cuts"]


@app.command("cut")
def cut(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service of the policy.")],
    config: ConfigOpt = None,
) -> None:
    """Back up SERVICE's file-like sources together and mark its databases' WAL at the
    same moment: a consistent cut that `recover --at-cut` brings back (the daemon runs
    this on [services.NAME.recovery] cuts)."""
    from safehold.dr.cuts import record_cut
    from safehold.dr.jobs import require_service  # pydantic: not for `safehold --help`
    from safehold.dr.status import open_policy_repository

    s = settings(ctx)
    _path, policy = load_config(config)
    require_service(policy, service)
    from safehold.repo.lock import acquire

    repo = open_policy_repository(policy.repositories[policy.repository_of(service)])
    s.lock = s.resources.enter_context(acquire(repo, False, retry_for=s.retry_lock))
    repo.load_index()
    doc = record_cut(policy, service, repo)
    if s.json:
        print_json({"message_type": "summary", **doc})
    elif not s.quiet:
        out().print(
            f"cut {doc['id']} of {service} at {doc['time']}: {len(doc['sources'])} sources,"
            f" skew {doc['skew_seconds']:.3f}s",
            markup=False,
        )


@app.command("cuts")
def cuts(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    config: ConfigOpt = None,
) -> None:
    """List the consistent cuts recorded for the policy's services, oldest first."""
    from safehold.dr.cuts import list_cuts
    from safehold.dr.jobs import require_service
    from safehold.dr.status import open_policy_repository

    s = settings(ctx)
    _path, policy = load_config(config)
    names = [service] if service else list(policy.services)
    found = []
    for name in names:
        require_service(policy, name)
        repo = open_policy_repository(policy.repositories[policy.repository_of(name)])
        found += list_cuts(repo, name)
    if s.json:
        print_json(found)
        return
    for c in found:
        sources = ", ".join(
            f"{n} {v.get('snapshot', '')[:8] or v.get('restore_point', '')}"
            for n, v in c["sources"].items()
        )
        out().print(
            f"{c['id']}  {c['service']}  {c['time']}  skew {c['skew_seconds']:.3f}s  {sources}",
            markup=False,
        )
