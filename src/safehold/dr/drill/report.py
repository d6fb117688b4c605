"""The record of one drill: the point chosen, the engine's step timeline, every check, the
achieved RTO and RPO against the objectives, the sandbox and its teardown; as JSON and as
a standalone HTML page (no script, no external resource) with an SVG chart of the
service's last drills."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CHECK_FAILED",
    "FAILED",
    "OBJECTIVE_MISSED",
    "PASSED",
    "REFUSED",
    "DrillReport",
    "render_html",
]

PASSED = "passed"
CHECK_FAILED = "check failed"
OBJECTIVE_MISSED = "objective missed"
REFUSED = "refused"
FAILED = "failed"
CHART_DRILLS = 20


@dataclass
class CheckResult:
    name: str
    kind: str  # files, sqlite, postgres, redis (built in) or sql, http, tcp, command (policy)
    source: str | None
    passed: bool
    detail: str
    seconds: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrillReport:
    id: str
    service: str
    started: str
    point_spec: str  # what was asked: latest, random, a time, cut:ID
    kind: str = "restore"  # restore, or failover (a standby's failover drill)
    moment: str | None = None  # the engine's moment it became
    point: str | None = None  # the recovery point every source came back to
    window: dict[str, str] = field(default_factory=dict)  # oldest, newest recoverable
    ended: str | None = None
    outcome: str | None = None  # passed, check failed, objective missed, refused, failed
    error: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # the engine's, then verify
    sources: list[dict[str, Any]] = field(default_factory=list)
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    rpo_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    objectives: dict[str, float | None] = field(default_factory=dict)  # rto, rpo in seconds
    sandbox: dict[str, Any] = field(default_factory=dict)  # root, kept_until, how to reach
    teardown: list[str] = field(default_factory=list)
    location: str | None = None
    nice: int = 0  # the drill's CPU priority (the daemon runs drills at 19)

    @property
    def rto_met(self) -> bool | None:
        return _met(self.rto_seconds, self.objectives.get("rto"))

    @property
    def rpo_met(self) -> bool | None:
        return _met(self.rpo_seconds, self.objectives.get("rpo"))

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["rto_met"], doc["rpo_met"] = self.rto_met, self.rpo_met
        return {"message_type": "drill", **doc}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DrillReport:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        known["checks"] = [CheckResult(**c) for c in doc.get("checks", [])]
        return cls(**known)


def _met(achieved: float | None, objective: float | None) -> bool | None:
    if objective is None:
        return None
    return achieved is not None and achieved <= objective


# -- HTML -------------------------------------------------------------------------------

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}.ok{color:#17692c}.bad{color:#b00020;font-weight:bold}
.bar{fill:#4a7fd4}.barbad{fill:#d0463c}.obj{stroke:#222;stroke-dasharray:4 3}
svg text{font-size:11px}
"""


def _mark(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return '<span class="ok">met</span>' if ok else '<span class="bad">missed</span>'


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def render_html(report: DrillReport, history: list[DrillReport]) -> str:
    """A standalone page: the outcome, the objectives, the timeline, the checks, and a
    chart of ``history`` (this service's drills, oldest first)."""
    e = html.escape
    ok = report.outcome == PASSED
    rows = [
        f'<tr><th>Outcome</th><td class="{"ok" if ok else "bad"}">{e(str(report.outcome))}'
        + (f": {e(report.error)}" if report.error else "")
        + "</td></tr>",
        f"<tr><th>Point asked</th><td>{e(report.point_spec)} ({e(str(report.moment))})</td></tr>",
        f"<tr><th>Recovered to</th><td>{e(str(report.point))}</td></tr>",
        f"<tr><th>Started / ended</th><td>{e(report.started)} / {e(str(report.ended))}</td></tr>",
        f"<tr><th>Achieved RTO</th><td>{_seconds(report.rto_seconds)} against"
        f" {_seconds(report.objectives.get('rto'))}: {_mark(report.rto_met)}</td></tr>",
        f"<tr><th>Achieved RPO</th><td>{_seconds(report.rpo_seconds)} against"
        f" {_seconds(report.objectives.get('rpo'))}: {_mark(report.rpo_met)}</td></tr>",
    ]
    steps = [
        f"<tr><td>{e(s['step'])}</td><td>{e(str(s.get('source') or ''))}</td>"
        f"<td>{e(str(s.get('outcome')))}</td><td>{_seconds(s.get('seconds'))}</td>"
        f"<td>{e(str(s.get('detail', '')))}</td></tr>"
        for s in report.steps
    ]
    checks = [
        f"<tr><td>{e(c.name)}</td><td>{e(c.kind)}</td>"
        f'<td class="{"ok" if c.passed else "bad"}">{"passed" if c.passed else "FAILED"}</td>'
        f"<td>{e(c.detail)}</td></tr>"
        for c in report.checks
    ]
    rpo = [
        f"<tr><td>{e(name)}</td><td>{e(str(r.get('recovered')))}</td>"
        f"<td>{e(str(r.get('live_newest')))}</td><td>{_seconds(r.get('seconds'))}</td>"
        f"<td>{e(str(r.get('basis')))}</td></tr>"
        for name, r in report.rpo_sources.items()
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Drill {e(report.id)} of {e(report.service)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>Recovery drill of {e(report.service)}</h1>",
            f"<p>Drill {e(report.id)}, from {e(str(report.location))}.</p>",
            "<table>",
            *rows,
            "</table>",
            "<h2>Steps</h2><table><tr><th>Step</th><th>Of</th><th>Outcome</th><th>Time</th>"
            "<th>Detail</th></tr>",
            *steps,
            "</table>",
            "<h2>Checks</h2><table><tr><th>Check</th><th>Kind</th><th>Result</th>"
            "<th>Found</th></tr>",
            *checks,
            "</table>",
            "<h2>Recovery point per source</h2><table><tr><th>Source</th><th>Recovered</th>"
            "<th>Live newest</th><th>Age</th><th>Basis</th></tr>",
            *rpo,
            "</table>",
            "<h2>Last drills</h2>",
            chart(history[-CHART_DRILLS:], "rto_seconds", "rto", "Achieved RTO"),
            chart(history[-CHART_DRILLS:], "rpo_seconds", "rpo", "Achieved RPO"),
            "</body></html>",
            "",
        ]
    )


def chart(reports: list[DrillReport], measure: str, objective: str, title: str) -> str:
    """Bars of one measure per drill (red: the drill did not pass), the objective dashed."""
    width, height, pad = 600, 180, 30
    values = [getattr(r, measure) for r in reports]
    goal = next((r.objectives.get(objective) for r in reversed(reports)), None)
    top = max([v for v in values if v is not None] + [goal or 0, 1e-3]) * 1.1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' role="img" aria-label="{html.escape(title)}">',
        f'<text x="4" y="14">{html.escape(title)} of the last {len(reports)} drills'
        f" (top {top:.1f} s)</text>",
    ]
    if not reports:
        parts.append('<text x="4" y="40">no drill yet</text>')
    step = (width - pad) / max(len(reports), 1)
    for i, (r, v) in enumerate(zip(reports, values, strict=True)):
        h = 0.0 if v is None else (height - 2 * pad) * v / top
        cls = "bar" if r.outcome == PASSED else "barbad"
        x = pad + i * step
        label = html.escape(f"{r.id}: {r.outcome}, {_seconds(v)}")
        parts.append(
            f'<rect class="{cls}" x="{x:.1f}" y="{height - pad - h:.1f}" width="{step * 0.7:.1f}"'
            f' height="{max(h, 1):.1f}"><title>{label}</title></rect>'
        )
    if goal is not None:
        y = height - pad - (height - 2 * pad) * goal / top
        parts.append(f'<line class="obj" x1="{pad}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{pad}" y="{y - 3:.1f}">objective {goal:.0f} s</text>')
    parts.append("</svg>")
    return "".join(parts)
