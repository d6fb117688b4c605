"""The documents behind the API and the pages, each built once for both: a service's
snapshots, a directory of a snapshot, a file's details, the jobs, the exposure chart.

Each equals what the CLI prints with ``--json`` where the CLI has the same thing:
snapshots as ``snapshots --json --tag source=S/X``, entries as ``ls --json``, jobs as
``jobs --json``.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from safehold.archive.browse import dump_file, entry_doc, find_node
from safehold.archive.tree import Node, decode_tree
from safehold.dr.drill.report import DrillReport
from safehold.dr.drill.store import find_report
from safehold.dr.jobs import service_tag, source_tag
from safehold.dr.plan import resolve_objectives
from safehold.errors import InvalidArgument, NotFound, SnapshotNotFound
from safehold.repo.snapshot import Snapshot, find_snapshot, snapshot_doc
from safehold.service.http.charts import Chart, exposure_chart
from safehold.service.http.state import Dashboard, Missing
from safehold.service.job_documents import find_runs, jobs_document

__all__ = [
    "SHA256_LIMIT",
    "directory_doc",
    "drill_report",
    "drills",
    "drills_doc",
    "exposure",
    "exposure_doc",
    "file_doc",
    "find_service_snapshot",
    "jobs_doc",
    "service_snapshots",
]

DEFAULT_HOURS = 24
SHA256_LIMIT = 64 * 1024 * 1024  # files up to this size get a SHA-256 in their details


class _Sink:
    """A write-only file that hashes what it is given (``dump_file`` writes into it)."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return len(data)


def service_snapshots(
    dashboard: Dashboard, service: str, source: str | None, refresh: bool = False
) -> list[Snapshot]:
    """The snapshots the daemon made for ``service`` (or one of its sources), oldest first."""
    dashboard.check_service(service)
    if source is not None and source not in {
        s.name for s in dashboard.policy.services[service].sources
    }:
        raise InvalidArgument(f"service {service} has no source {source!r}")
    tag = source_tag(service, source) if source is not None else service_tag(service)
    snapshots = dashboard.snapshots(dashboard.policy.repository_of(service), refresh)
    return [s for s in snapshots if tag in s.tags]


def find_service_snapshot(dashboard: Dashboard, service: str, ref: str) -> Snapshot:
    """An id, short id or ``latest`` among the service's snapshots; an id not in the
    kept list is looked for again in a fresh one (a backup may have just made it)."""
    try:
        return find_snapshot(service_snapshots(dashboard, service, None), ref)
    except SnapshotNotFound:
        return find_snapshot(service_snapshots(dashboard, service, None, refresh=True), ref)


def _node_at(dashboard: Dashboard, service: str, snap: Snapshot, path: str) -> Node | None:
    repo = dashboard.browsable(dashboard.policy.repository_of(service), snap)
    return find_node(repo, snap, path)


def directory_doc(dashboard: Dashboard, service: str, ref: str, path: str) -> dict[str, Any]:
    """The entries right under ``path`` (each as ``ls --json`` prints it)."""
    snap = find_service_snapshot(dashboard, service, ref)
    repo = dashboard.browsable(dashboard.policy.repository_of(service), snap)
    node = find_node(repo, snap, path) if path.strip("/") else None
    if node is not None and node.type != "dir":
        raise InvalidArgument(f"{path} is not a directory in snapshot {snap.short_id}")
    tree = snap.tree if node is None else node.subtree
    nodes = decode_tree(repo.load_tree_document(tree), f"tree {tree}") if tree else []
    base = os.fsencode(path.rstrip("/"))
    return {
        "message_type": "directory",
        "snapshot": snapshot_doc(snap),
        "path": path if path.strip("/") else "/",
        "entries": [entry_doc(base + b"/" + n.name, n) for n in nodes],
    }


def file_doc(dashboard: Dashboard, service: str, ref: str, path: str) -> dict[str, Any]:
    """A file's entry, its content blob ids (keyed BLAKE3) and, up to SHA256_LIMIT bytes,
    the SHA-256 of its content, which can be compared with the original."""
    snap = find_service_snapshot(dashboard, service, ref)
    node = _node_at(dashboard, service, snap, path)
    if node is None or node.type == "dir":
        raise InvalidArgument(f"{path} is not a file in snapshot {snap.short_id}")
    doc: dict[str, Any] = {
        "message_type": "file",
        "snapshot": snapshot_doc(snap),
        **entry_doc(os.fsencode(path.rstrip("/")), node),
        "blobs": [blob.hex() for blob in node.content],
        "sha256": None,
    }
    if node.type == "file" and node.size <= SHA256_LIMIT:
        sink = _Sink()
        repo = dashboard.browsable(dashboard.policy.repository_of(service), snap)
        dump_file(repo, node, sink)  # type: ignore[arg-type]  # only write() is used
        doc["sha256"] = sink.sha256.hexdigest()
    return doc


def jobs_doc(
    dashboard: Dashboard, job: str | None, outcome: str | None, limit: int
) -> dict[str, Any]:
    """``safehold jobs --json``'s document: the newest runs first."""
    history = dashboard.history()
    if history is None:
        raise InvalidArgument(f"no job history in {dashboard.state_dir}: has the daemon run?")
    runs = find_runs(dashboard.policy, history, job, outcome, limit)
    return dashboard.redactor.doc(jobs_document(runs))


def _repositories(dashboard: Dashboard, service: str | None) -> list[str]:
    if service is not None:
        dashboard.check_service(service)
        return [dashboard.policy.repository_of(service)]
    return sorted({dashboard.policy.repository_of(name) for name in dashboard.policy.services})


def drills(dashboard: Dashboard, service: str | None) -> list[DrillReport]:
    """The stored drills (of one service), oldest first, as ``safehold drills`` lists them."""
    return [
        report
        for name in _repositories(dashboard, service)
        for report in dashboard.drills(name)
        if service is None or report.service == service
    ]


def drills_doc(dashboard: Dashboard, service: str | None) -> list[dict[str, Any]]:
    """``safehold drills --json [--service S]``'s document."""
    return dashboard.redactor.doc([report.to_doc() for report in drills(dashboard, service)])


def standbys_doc(dashboard: Dashboard, service: str | None) -> list[dict[str, Any]] | None:
    """``safehold standby status SERVICE --json`` of each service with a hot standby (or
    of ``service``), as the last status evaluation read it; None before the first one."""
    if service is not None:
        dashboard.check_service(service)
    current = dashboard.status()
    if current is None:
        return None
    return dashboard.redactor.doc(
        [
            s.standby.document()
            for s in current.services
            if s.standby is not None and service in (None, s.name)
        ]
    )


def drill_report(dashboard: Dashboard, report_id: str) -> tuple[DrillReport, list[DrillReport]]:
    """A stored drill (an id or a unique prefix) and its service's drills up to it, as
    ``safehold drills show`` finds them."""
    for name in _repositories(dashboard, None):
        try:
            return find_report(dashboard.repository(name), report_id)
        except NotFound:
            continue
    raise Missing(f"no drill report {report_id!r}")


def exposure(dashboard: Dashboard, service: str, hours: int | None) -> Chart:
    """The RPO exposure chart of ``service`` over the ``hours`` before the last status
    (None: up to DEFAULT_HOURS, shorter when the history is); its last point is that
    status's exposure."""
    dashboard.check_service(service)
    status = dashboard.status()
    now, now_exposure = datetime.now(UTC), None
    if status is not None:
        now = status.now
        found = next(s for s in status.services if s.name == service).exposure
        now_exposure = found.total_seconds() if found is not None else None
    return exposure_chart(
        dashboard.history(),
        service,
        [f"{service}/{s.name}" for s in dashboard.policy.services[service].sources],
        resolve_objectives(dashboard.policy, service)["rpo"].value,
        now,
        now_exposure,
        timedelta(hours=hours or DEFAULT_HOURS),
        fit=hours is None,
    )


def exposure_doc(chart: Chart, service: str) -> dict[str, Any]:
    return {
        "message_type": "exposure",
        "service": service,
        "start": chart.start.isoformat(),
        "end": chart.end.isoformat(),
        "rpo_seconds": chart.rpo,
        "points": [
            {"time": p.moment.isoformat(), "exposure_seconds": round(p.exposure, 3), "job": p.job}
            for p in chart.points
        ],
    }
