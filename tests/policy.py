"""Policy files as the tests and benchmarks write them, and a job run as the daemon runs it.

The pieces every daemon, status, drill and recover scenario repeated: the repository (with
its replicas), a service's files, SQLite and PostgreSQL sources, the daemon's table. Plain
text builders without pytest, so that bench/ uses them too; a scenario adds its own lines
(objectives, schedules, recovery and drill tables) between them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from safehold.dr.jobs import job_commands
from safehold.dr.load import CONFIG_ENV, load_policy
from safehold.dr.schedule import JobId

__all__ = [
    "clean_env",
    "daemon_table",
    "files_source",
    "postgres_source",
    "repository_table",
    "run_job",
    "sqlite_source",
]


def repository_table(location: object, password_file: object, *replicas: object) -> str:
    """``[repositories.main]`` with its password file and, in order, its replicas."""
    text = f'[repositories.main]\nlocation = "{location}"\npassword_file = "{password_file}"\n'
    for replica in replicas:
        text += f'[[repositories.main.replicas]]\nlocation = "{replica}"\n'
    return text


def _source(service: str, name: str, kind: str, options: str, backup: str | None) -> str:
    text = f'[[services.{service}.sources]]\nname = "{name}"\nkind = "{kind}"\n{options}\n'
    return text + (f'schedules.backup = "{backup}"\n' if backup is not None else "")


def files_source(
    service: str, *paths: object, name: str = "files", backup: str | None = None
) -> str:
    """A files source of ``paths``; ``backup``: its schedule (the policy's default if None)."""
    listed = ", ".join(f'"{p}"' for p in paths)
    return _source(service, name, "files", f"options.paths = [{listed}]", backup)


def sqlite_source(
    service: str, database: object, name: str = "meta", backup: str | None = None
) -> str:
    return _source(service, name, "sqlite", f'options.database = "{database}"', backup)


def postgres_source(
    service: str, pgdata: object, host: object, port: int, name: str = "db", schedules: str = ""
) -> str:
    """A PostgreSQL source reached over its Unix socket directory as the postgres user;
    ``schedules``: a TOML inline table (``{ full = "...", incremental = "off" }``)."""
    options = (
        f'options = {{ pgdata = "{pgdata}", host = "{host}", port = {port}, user = "postgres" }}'
    )
    if schedules:
        options += f"\nschedules = {schedules}"
    return _source(service, name, "postgres", options, None)


def daemon_table(state_dir: object, **settings: str | int) -> str:
    """``[daemon]`` with its state directory; ``settings`` as keys (strings are quoted)."""
    lines = ["[daemon]", f'state_dir = "{state_dir}"']
    lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def run_job(
    config: Path,
    action: str,
    target: str,
    schedule: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> str:
    """One job of the policy, each of its commands as the daemon runs it (with the policy
    in SAFEHOLD_CONFIG); their stdout.

    ``env``: the environment (without SAFEHOLD_* variables by default); a command that
    fails raises AssertionError with its stderr."""
    base = (env if env is not None else clean_env()) | {CONFIG_ENV: str(config.resolve())}
    out = ""
    for command in job_commands(load_policy(config), JobId(action, target, schedule)):
        proc = subprocess.run(
            [sys.executable, "-m", "safehold", *command.argv],
            capture_output=True,
            text=True,
            env={**base, **command.env},
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(command.argv)} exited {proc.returncode}:\n{proc.stderr}"
            )
        out += proc.stdout
    return out


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without SAFEHOLD_* variables, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")} | extra
