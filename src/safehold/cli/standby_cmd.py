"""``standby``: a hot standby of a service's PostgreSQL under Patroni, etcd and HAProxy,
and of its stateless application instances behind HAProxy."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config

if TYPE_CHECKING:
    from safehold.dr.policy import Policy
    from safehold.dr.standby.app_drill import AppFailoverReport
    from safehold.dr.standby.app_status import AppStatus
    from safehold.dr.standby.drill import FailoverDrillReport

__all__ = [
    "app_drill_summary",
    "run_app_failover",
    "run_failover",
    "standby_app",
    "wants_app_drill",
]

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


@standby_app.command("status")
def status_cmd(ctx: typer.Context, service: ServiceArg, config: ConfigOpt = None) -> None:
    """Which node is primary, each replica's lag (bytes, seconds) and whether it streams;
    a node that does not answer, no healthy standby, no synchronous standby when
    synchronous_mode is on. Read from each node's Patroni REST API. For an application
    pair: the instance HAProxy serves from and each instance's health check."""
    from safehold.dr.standby.config import resolve_setup
    from safehold.dr.standby.status import standby_status

    s = settings(ctx)
    _, policy = load_config(config)
    status = standby_status(resolve_setup(policy, service))
    if s.json:
        print_json(status.document())
        return
    primary = status.primary or "NONE"
    lines = (
        []
        if not status.nodes
        else [
            f"standby of {service} (Patroni scope {status.scope}): primary {primary},"
            f" timeline {status.timeline}"
            + (
                f", synchronous standby {status.sync_standby or 'NONE'}"
                if status.synchronous_mode
                else ""
            )
        ]
    )
    for node in status.nodes:
        if not node.reachable:
            lines.append(f"  {node.name:<12} {node.address:<22} does not answer: {node.error}")
            continue
        lag = ""
        if node.lag_bytes is not None:
            seconds = "?" if node.lag_seconds is None else f"{node.lag_seconds:.1f}"
            lag = f", lag {node.lag_bytes} bytes, {seconds} s"
        streaming = {True: ", streaming", False: ", NOT streaming", None: ""}[node.streaming]
        lines.append(
            f"  {node.name:<12} {node.address:<22} {node.role} ({node.state}){streaming}{lag}"
        )
    if status.app is not None:
        lines += app_status_lines(service, status.app)
    lines += [f"  PROBLEM: {p}" for p in status.problems] or ["  healthy"]
    if not s.quiet:
        out().print("\n".join(lines), markup=False)


def app_status_lines(service: str, app: AppStatus) -> list[str]:
    """The application pair: who serves through HAProxy, each instance's health check."""
    lines = [
        f"application pair of {service}: HAProxy {app.frontend} sends requests to"
        f" {app.serving or 'NONE'}"
    ]
    for inst in app.instances:
        health = "healthy" if inst.healthy else f"DOWN: {inst.error}"
        serving = ", serving" if inst.name == app.serving else ""
        lines.append(f"  {inst.name:<12} {inst.address:<22} {inst.role} ({health}){serving}")
    return lines


def run_failover(
    policy: Policy, path: str, service: str, mode: str, dsn: str, timeout: float
) -> tuple[FailoverDrillReport, Path]:
    """The failover drill of ``service`` (``standby failover-drill``, ``drill --failover``);
    the report and where it was saved in the state directory."""
    from safehold.dr.standby.config import resolve_setup
    from safehold.dr.standby.drill import MODES, run_failover_drill, save_report
    from safehold.errors import InvalidArgument
    from safehold.service.paths import state_dir

    if mode not in MODES:
        raise InvalidArgument(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    setup = resolve_setup(policy, service)
    host = (
        setup.standby.listen if setup.standby.listen not in ("0.0.0.0", "*", "::") else "127.0.0.1"
    )
    conninfo = f"{dsn} host={host} port={setup.standby.write_port}"
    directory = state_dir(policy, path) / "failover-drills"
    report = run_failover_drill(setup, mode, conninfo, directory, timeout)
    return report, save_report(report, directory)


def wants_app_drill(policy: Policy, service: str, app: bool) -> bool:
    """The application pair's drill: asked for, or the standby has no PostgreSQL."""
    from safehold.dr.standby.config import resolve_setup

    standby = resolve_setup(policy, service).standby
    if app and standby.app is None:
        from safehold.errors import InvalidArgument

        raise InvalidArgument(f"service {service} has no [services.{service}.standby.app] table")
    return app or not standby.nodes


def run_app_failover(
    policy: Policy, path: str, service: str, mode: str, timeout: float
) -> tuple[AppFailoverReport, Path]:
    """The application pair's failover drill (``--app``); the report and where it was
    saved in the state directory."""
    from safehold.dr.standby.app_drill import run_app_failover_drill
    from safehold.dr.standby.config import resolve_setup
    from safehold.dr.standby.drill import save_report
    from safehold.errors import InvalidArgument
    from safehold.service.paths import state_dir

    if mode != "kill":
        raise InvalidArgument(f"an application pair's drill has --mode kill only, not {mode!r}")
    app = resolve_setup(policy, service).standby.app
    assert app is not None  # wants_app_drill said so
    directory = state_dir(policy, path) / "failover-drills"
    report = run_app_failover_drill(service, app, directory, timeout)
    return report, save_report(report, directory)


def app_drill_summary(report: AppFailoverReport) -> str:
    return (
        f"{report.mode} of {report.active} ({report.stopped_by}): {report.serving} answered"
        f" through HAProxy after {report.failover_seconds} s (longest gap"
        f" {report.longest_gap_seconds} s); {report.failed_requests} of {report.requests}"
        " requests failed; "
        + (
            f"{report.active} back after {report.back_seconds} s"
            if report.active_back
            else f"{report.active} NOT back: {'; '.join(report.notes)}"
        )
    )


@standby_app.command("failover-drill")
def failover_drill_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    config: ConfigOpt = None,
    mode: Annotated[
        str, typer.Option("--mode", help="kill (SIGKILL the primary node) or switchover.")
    ] = "kill",
    dsn: Annotated[
        str,
        typer.Option(
            "--dsn",
            help="User and database for the writer through HAProxy's write port (password:"
            " PGPASSWORD or ~/.pgpass).",
        ),
    ] = "user=postgres dbname=postgres",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each step.")
    ] = 120.0,
    app: Annotated[
        bool,
        typer.Option(
            "--app",
            help="The application pair's drill (the default when the standby has no nodes).",
        ),
    ] = False,
) -> None:
    """While a writer commits through HAProxy's write port, kill the primary node outright
    (its Patroni and postgres, which must run on this host) or ask Patroni for a
    switchover; measure the time until writes succeed again through the same port, the
    acknowledged commits missing on the new primary, and the old node's return as a
    replica. The report (JSON) is kept in the daemon's state directory.

    For an application pair (--app): while a client sends requests through HAProxy's
    frontend, kill the active instance (its stop_command, pidfile, or the process on its
    port); measure the time until the passive answers and the failed requests, then start
    the active again (start_command) and measure its return."""
    s = settings(ctx)
    path, policy = load_config(config)
    if wants_app_drill(policy, service, app):
        app_report, saved = run_app_failover(policy, path, service, mode, timeout)
        if s.json:
            print_json({**app_report.to_dict(), "report": str(saved)})
        elif not s.quiet:
            out().print(f"{app_drill_summary(app_report)}\nreport: {saved}", markup=False)
        return
    report, saved = run_failover(policy, path, service, mode, dsn, timeout)
    if s.json:
        print_json({**report.to_dict(), "report": str(saved)})
    elif not s.quiet:
        out().print(
            f"{mode} of {report.old_primary}: {report.new_primary} took the writes through"
            f" HAProxy after {report.write_downtime_seconds} s (longest write gap"
            f" {report.longest_write_gap_seconds} s); {report.commits_acknowledged} commits"
            f" acknowledged, {len(report.commits_missing)} missing on the new primary;"
            + (
                f" {report.old_primary} back as replica after {report.rejoin_seconds} s"
                if report.old_primary_rejoined
                else f" {report.old_primary} NOT back: {'; '.join(report.notes)}"
            )
            + f"\nreport: {saved}",
            markup=False,
        )
