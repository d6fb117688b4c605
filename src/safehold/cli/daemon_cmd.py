"""``daemon`` and ``jobs``: run a policy's schedules, and show what the daemon did."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from safehold.cli.app import app, settings
from safehold.cli.output import out, print_json
from safehold.cli.policy_file import ConfigOpt, load_config
from safehold.errors import InvalidArgument

if TYPE_CHECKING:
    from safehold.service.history import JobRun

__all__ = ["daemon", "jobs"]


@app.command("daemon")
def daemon(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the policy: scheduled backups, replication, retention and checks, the log
    archivers, the protection status, metrics and alerts, until SIGTERM or Ctrl-C.

    Refuses to start (exit 11) when another daemon runs the same policy. Logs go to
    stderr (the journal, under systemd); `safehold jobs` shows the job history.
    """
    from safehold.service.daemon import Daemon
    from safehold.service.paths import state_dir

    del ctx
    path, policy = load_config(config)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from safehold.dr.load import CONFIG_ENV

    os.environ[CONFIG_ENV] = os.path.abspath(path)  # for jobs that read the policy (cut)
    daemon = Daemon(policy, path, state_dir(policy, path))
    daemon.install_signal_handlers()
    daemon.run()


@app.command("jobs")
def jobs(
    ctx: typer.Context,
    config: ConfigOpt = None,
    job: Annotated[
        str | None, typer.Option("--job", help="Only this job, e.g. 'sync/db full'.")
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            help="Only runs with this outcome: running, success, partial, failed,"
            " interrupted or cancelled.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N runs.")] = 30,
) -> None:
    """The daemon's job history, newest first: start, end, outcome, bytes, snapshot, error.

    With --json each run also carries its commands' JSON summaries (`summaries`).
    """
    from safehold.service.history import JobHistory
    from safehold.service.job_documents import check_outcome, find_runs, jobs_document
    from safehold.service.paths import HISTORY_FILE, state_dir

    s = settings(ctx)
    path, policy = load_config(config)
    check_outcome(outcome)
    history_path = state_dir(policy, path) / HISTORY_FILE
    if not history_path.exists():
        raise InvalidArgument(f"no job history at {history_path}: has the daemon run?")
    history = JobHistory(history_path, readonly=True)
    try:
        runs = find_runs(policy, history, job, outcome, limit)
    finally:
        history.close()
    if s.json:
        print_json(jobs_document(runs))
        return
    out().print(render_runs(runs), markup=False, end="")


def render_runs(runs: list[JobRun]) -> str:
    from safehold.cli.output import human_size

    if not runs:
        return "no runs\n"
    lines = [f"{'ID':>5}  {'STARTED':<19}  {'TOOK':>7}  {'OUTCOME':<11}  JOB"]
    for run in runs:
        took = f"{run.duration:.1f}s" if run.duration is not None else "-"
        line = (
            f"{run.id:>5}  {run.started.strftime('%Y-%m-%d %H:%M:%S'):<19}  {took:>7}"
            f"  {run.outcome:<11}  {run.job}"
        )
        extras = []
        if run.attempt > 1:
            extras.append(f"attempt {run.attempt}")
        if run.snapshot:
            extras.append(f"snapshot {run.snapshot[:8]}")
        if run.bytes_added is not None:
            extras.append(f"added {human_size(run.bytes_added)}")
        if extras:
            line += f"  ({', '.join(extras)})"
        lines.append(line)
        if run.error and run.outcome != "success":
            lines.append(f"{'':>5}  {run.error}")
    return "\n".join(lines) + "\n"
