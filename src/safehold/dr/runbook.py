"""The manual recovery procedure of a service, generated from the policy: the exact commands
in order, from the repository, from each replica, from a copy on an external disk, and
without safehold at all; with the objectives it must meet.

A runbook is a list of sections, each some sentences and some commands; Markdown and HTML
are two renderings of it. Every ``safehold`` command in it is an argument list that the
real CLI parses (a test checks this). The daemon stores the current runbook in its state
directory and in the repository (``runbooks/<service>/<time>-<hash>``, sealed like a WAL
file), so the procedure is found where the backups are when the host is gone.
"""

from __future__ import annotations

import hashlib
import html
import os
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.dr.jobs import require_service, source_tag
from safehold.dr.plan import resolve_objectives
from safehold.dr.policy import Policy
from safehold.dr.policy_recovery import SourceTarget
from safehold.dr.policy_sources import Source
from safehold.errors import InvalidArgument, NotFound
from safehold.repo.repository import Repository

__all__ = [
    "Runbook",
    "Section",
    "build_runbook",
    "latest_stored",
    "publish_runbooks",
    "render",
]

PREFIX = "runbooks/"
EXAMPLE_TIME = "2026-01-31T12:00:00Z"
EXTERNAL_DISK = "/mnt/external/safehold"


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # sentences, one paragraph each
    commands: list[list[str]] = field(default_factory=list)  # safehold argument lists
    other: list[str] = field(default_factory=list)  # shell lines that are not safehold


@dataclass
class Runbook:
    service: str
    sections: list[Section]

    def safehold_commands(self) -> list[list[str]]:
        return [c for s in self.sections for c in s.commands]


def build_runbook(policy: Policy, config: str, service: str) -> Runbook:
    """The procedure for ``service`` of ``policy`` read from the file ``config``."""
    require_service(policy, service)
    svc = policy.services[service]
    repo_name = policy.repository_of(service)
    repository = policy.repositories[repo_name]
    config = os.path.abspath(config)
    objectives = resolve_objectives(policy, service)
    rto, rpo = (objectives[k].text() for k in ("rto", "rpo"))
    sources = ", ".join(f"{s.name} ({s.kind})" for s in svc.sources)
    sections = [
        Section(
            f"Recovering service {service}",
            [
                svc.description or f"Service {service}: {sources}.",
                f"Objectives: back within {rto} (RTO), losing at most {rpo} of data (RPO).",
                f"Backups: repository {repo_name} at {repository.location}"
                + "".join(f"; replica {r.location}" for r in repository.replicas)
                + ".",
                "Generated from the policy by `safehold runbook`; every command below is"
                " checked to parse with safehold.",
            ],
        ),
        Section(
            "1. See what can be restored",
            ["The recovery points of every source, and the consistent cuts recorded."],
            [["status", "-c", config], ["cuts", service, "-c", config]],
        ),
        Section(
            "2. Recover the whole service (host lost, or data corrupted)",
            [
                "The plan first (which snapshot, WAL target, path and port per source), then"
                " the recovery; it reads a replica by itself when the repository cannot be"
                " read, and exits 0 only when every health check passes.",
                "To a moment before a mistake (an accidental deletion) give --to-time, into a"
                " sandbox (--target-root, free ports) to copy the lost data back by hand;"
                " a recorded cut brings files and rows back from the same second.",
                "Only a recovery that replaces the lost primary takes --promote-as-primary.",
            ],
            [
                ["recover", service, "-c", config, "--latest", "--dry-run"],
                ["recover", service, "-c", config, "--latest"],
                [
                    "recover",
                    service,
                    "-c",
                    config,
                    "--to-time",
                    EXAMPLE_TIME,
                    "--target-root",
                    f"/srv/recovered-{service}",
                ],
                ["recover", service, "-c", config, "--at-cut", "latest"],
                ["recover", service, "-c", config, "--latest", "--promote-as-primary"],
            ],
        ),
    ]
    copies = [(f"replica {r.location}", r.location) for r in repository.replicas]
    copies.append(("a copy on an external disk", EXTERNAL_DISK))
    for i, (what, location) in enumerate(copies, start=3):
        sections.append(_by_hand(policy, service, f"{i}. Source by source from {what}", location))
    sections[-1].commands.insert(
        0, ["--repo", repository.location, "replicate", "--to", EXTERNAL_DISK]
    )
    sections[-1].text.insert(0, "Make the copy while the repository is reachable:")
    has_wal = any(s.kind == "postgres" for s in svc.sources)
    sections.append(_without_safehold(len(copies) + 3, has_wal))
    checks = svc.recovery.checks
    if checks:
        sections.append(
            Section(
                f"{len(copies) + 4}. The service is back when",
                [f"{c.label(i)}: {c.kind} {getattr(c, c.kind)}" for i, c in enumerate(checks)],
            )
        )
    return Runbook(service, sections)


def _by_hand(policy: Policy, service: str, title: str, location: str) -> Section:
    """Each source restored by its own command from ``location``."""
    kind, value = policy.repositories[policy.repository_of(service)].password_source()
    access = _access(policy, service, location)
    section = Section(
        title,
        [
            "Each source by its own command (the password as for the repository:"
            f" {kind} {value}); a database replays its archived WAL to the end."
        ],
    )
    svc = policy.services[service]
    for source in svc.sources:
        target = svc.recovery.sources.get(source.name, SourceTarget())
        command = _restore_command(service, source, target)
        if command is not None:
            section.commands.append([*access, *command])
    return section


def _access(policy: Policy, service: str, location: str) -> list[str]:
    """``--repo LOCATION`` and the password file, when the password comes from one."""
    kind, value = policy.repositories[policy.repository_of(service)].password_source()
    return ["--repo", location, *(["--password-file", value] if kind == "file" else [])]


def _restore_command(service: str, source: Source, target: SourceTarget) -> list[str] | None:
    options: Any = source.options
    tag = ["--tag", source_tag(service, source.name)]
    if source.kind == "files":
        return ["restore", "latest", *tag, "--target", "/"]
    if source.kind == "postgres":
        pgdata = target.pgdata or options.pgdata or "/var/lib/postgresql/15/main"
        port = target.port or options.port or 5432
        return ["pg", "restore", "--target-dir", pgdata, "--port", str(port), "--start"]
    if source.kind == "sqlite":
        return ["sqlite", "restore", "latest", "--to", target.path or options.database]
    if source.kind == "redis":
        directory = target.dir or "/var/lib/redis"
        port = target.port or options.port or 6379
        return ["redis", "restore", "latest", "--to-dir", directory, "--start", "--port", str(port)]
    if source.kind == "bucket":
        return ["restore", "latest", *tag, "--target", target.location or options.location]
    if source.kind == "command" and target.command:
        return ["restore", "latest", *tag, "--stdout-to-command", target.command]
    if source.kind == "mysql":
        return ["mysql", "restore", "--to-dir", "/var/lib/mysql-restored"]
    return None


def _without_safehold(number: int, has_wal: bool) -> Section:
    section = Section(
        f"{number}. Without safehold",
        [
            "The repository format is documented byte by byte in docs/FORMAT.md; its §11"
            " recovers a file by hand. docs/recover.py does it with four Python packages"
            " (cryptography, argon2-cffi, zstandard, blake3), from a copy of the repository"
            " on a local disk (for a bucket, copy it down first, e.g. with rclone or aws s3"
            " sync). List a snapshot's directory, then write each file out:",
        ],
        other=[
            "pip install cryptography argon2-cffi zstandard blake3",
            f"python3 recover.py --password-file PASSWORD_FILE {EXTERNAL_DISK} latest /",
            f"python3 recover.py --password-file PASSWORD_FILE {EXTERNAL_DISK} latest"
            f" /PATH/OF/A/FILE -o /restored/FILE",
        ],
    )
    if has_wal:
        section.text.append(
            "PostgreSQL's archived WAL files are the objects wal/<system id>/<file name>,"
            " sealed as FORMAT.md §13 says: put them in the restored data directory's"
            " pg_wal/ before starting it."
        )
    return section


# -- rendering --------------------------------------------------------------------------


def render(runbook: Runbook, fmt: str = "md") -> str:
    if fmt == "md":
        return _markdown(runbook)
    if fmt == "html":
        return _html(runbook)
    raise InvalidArgument(f"--format must be md or html, not {fmt!r}")


def _line(argv: list[str]) -> str:
    return shlex.join(["safehold", *argv])


def _markdown(runbook: Runbook) -> str:
    out: list[str] = []
    for i, section in enumerate(runbook.sections):
        out += [("# " if i == 0 else "## ") + section.title, ""]
        for sentence in section.text:
            out += [sentence, ""]
        lines = [_line(c) for c in section.commands] + section.other
        if lines:
            out += ["```sh", *lines, "```", ""]
    return "\n".join(out)


def _html(runbook: Runbook) -> str:
    title = html.escape(runbook.sections[0].title)
    out = [f'<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>{title}</title>']
    for i, section in enumerate(runbook.sections):
        tag = "h1" if i == 0 else "h2"
        out.append(f"<{tag}>{html.escape(section.title)}</{tag}>")
        out += [f"<p>{html.escape(sentence)}</p>" for sentence in section.text]
        lines = [_line(c) for c in section.commands] + section.other
        if lines:
            out.append("<pre><code>" + html.escape("\n".join(lines)) + "</code></pre>")
    out.append("</html>")
    return "\n".join(out) + "\n"


# -- where the daemon keeps it ----------------------------------------------------------


def publish_runbooks(policy: Policy, config: str, state_dir: str, open_repo: Any) -> list[str]:
    """Write each service's runbook into ``state_dir`` and into its repository when it
    changed since the last one stored; returns one sentence per runbook written."""
    done = []
    for service in policy.services:
        text = render(build_runbook(policy, config, service))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = os.path.join(state_dir, f"runbook-{service}.md")
        if _read(path) != text:
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            done.append(f"runbook of {service} written to {path}")
        repo_name = policy.repository_of(service)
        repo = open_repo(policy.repositories[repo_name])
        prefix = f"{PREFIX}{service}/"
        if not any(info.key.endswith(f"-{digest}") for info in repo.store.list(prefix)):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            repo.put_log_file(f"{prefix}{stamp}-{digest}", text.encode())
            done.append(f"runbook of {service} stored in repository {repo_name}")
    return done


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def latest_stored(repo: Repository, service: str) -> str:
    """The newest runbook of ``service`` stored in ``repo`` (by the daemon)."""
    keys = sorted(info.key for info in repo.store.list(f"{PREFIX}{service}/"))
    if not keys:
        raise NotFound(f"{PREFIX}{service}/ (no runbook stored: the daemon stores one)")
    return repo.get_log_file(keys[-1]).decode()
