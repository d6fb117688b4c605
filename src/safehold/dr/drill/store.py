"""Where drill reports are kept: the state directory (``drills/<service>/<id>.json`` and
``.html``, what status and the daemon read) and the repository (``reports/<service>/<id>``,
sealed like a WAL file, docs/FORMAT.md §17), where they survive the host and replicate
with everything else."""

from __future__ import annotations

import json
import os
from typing import Any

from safehold.dr.drill.report import DrillReport, render_html
from safehold.errors import NotFound
from safehold.repo.repository import Repository

__all__ = [
    "PREFIX",
    "find_report",
    "local_reports",
    "save_local",
    "store_in_repository",
    "stored_reports",
]

PREFIX = "reports/"


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def local_reports(state_dir: str, service: str) -> list[DrillReport]:
    """The service's drills recorded in the state directory, oldest first."""
    directory = os.path.join(state_dir, "drills", service)
    found = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.endswith(".json"):
            try:
                with open(os.path.join(directory, name)) as f:
                    found.append(DrillReport.from_doc(json.load(f)))
            except (OSError, ValueError, TypeError):
                continue
    return found


def save_local(report: DrillReport, state_dir: str) -> str:
    """The JSON and the HTML report in the state directory; returns the HTML's path."""
    base = os.path.join(state_dir, "drills", report.service, report.id)
    _write(base + ".json", json.dumps(report.to_doc(), indent=1))
    history = [r for r in local_reports(state_dir, report.service) if r.id < report.id]
    _write(base + ".html", render_html(report, [*history, report]))
    return base + ".html"


def store_in_repository(report: DrillReport, repo: Repository) -> str:
    """The report sealed into the repository; returns its key."""
    key = f"{PREFIX}{report.service}/{report.id}"
    repo.put_log_file(key, json.dumps(report.to_doc(), sort_keys=True).encode())
    return key


def stored_reports(repo: Repository, service: str | None = None) -> list[DrillReport]:
    """The drills stored in the repository (of one service), oldest first."""
    prefix = f"{PREFIX}{service}/" if service else PREFIX
    keys = sorted(
        (info.key for info in repo.store.list(prefix)), key=lambda k: k.rsplit("/", 1)[-1]
    )
    return [DrillReport.from_doc(_load(repo, key)) for key in keys]


def _load(repo: Repository, key: str) -> dict[str, Any]:
    doc = json.loads(repo.get_log_file(key))
    if not isinstance(doc, dict):
        raise NotFound(f"{key} (not a drill report)")
    return doc


def find_report(repo: Repository, report_id: str) -> tuple[DrillReport, list[DrillReport]]:
    """The stored drill ``report_id`` (a unique prefix will do) and its service's history."""
    everything = stored_reports(repo)
    matches = [r for r in everything if r.id.startswith(report_id)]
    if len(matches) != 1:
        what = "no" if not matches else f"{len(matches)}"
        raise NotFound(f"{PREFIX}*/{report_id} ({what} drill reports match)")
    found = matches[0]
    history = [r for r in everything if r.service == found.service and r.id <= found.id]
    return found, history
