"""``bench/standby_run.py --app``: an application pair's failover, measured by `safehold
standby failover-drill` (issue 17: the passive takes the traffic <= 3 s after the active
dies), with the generated HAProxy section and two variants that show what its settings
buy.

Two instances of tests/standby/app_server.py and HAProxy on 127.0.0.1
(tests/standby/app_pair.py); the drill's client sends one request after the other through
the frontend, the active is SIGKILLed through its pidfile, then started again. Failover:
from the kill to the first request answered by the passive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.standby_run import spread
from tests.service.daemon_helpers import SAFEHOLD, clean_env
from tests.standby.app_pair import AppPairLab, pair_policy, running_pair

from safehold.dr.load import load_policy
from safehold.dr.standby.app_drill import RequestClient
from safehold.dr.standby.drill import gaps, wait_until

SETTLE_SECONDS = 3.0  # after the active is back, so a run starts from a quiet pair


def _without_observe(cfg: str) -> str:
    return cfg.replace(" observe layer4 error-limit 1 on-error fail-check", "")


def _haproxy_defaults(cfg: str) -> str:
    """What a hand-written ``backup`` pair gets from HAProxy's own defaults: checks every
    2 s, down after 3, up after 2, retries 3 without redispatch."""
    head, _, section = cfg.partition("listen web_app")
    lines = []
    for line in section.splitlines():
        if line.startswith(("    retries", "    option redispatch", "    default-server")):
            continue
        lines.append(line)
    return head + "listen web_app" + "\n".join(lines) + "\n    retries 3\n"


def _replaying(cfg: str) -> str:
    """What ``replay_requests = true`` adds."""
    return cfg.replace(
        "    option redispatch 1\n",
        "    option redispatch 1\n    retry-on conn-failure empty-response\n",
    )


VARIANTS: list[tuple[str, Callable[[str], str] | None]] = [
    ("generated (inter 1s, fastinter 250ms, fall 2, observe layer4, retries 5, redispatch)", None),
    ("generated with replay_requests = true", _replaying),
    ("generated without observe layer4", _without_observe),
    ("HAProxy's defaults (inter 2s, fall 3, rise 2, retries 3, no redispatch)", _haproxy_defaults),
]


def _drill(config: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [*SAFEHOLD, "--json", "standby", "failover-drill", "web", "-c", str(config)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
        check=True,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _hang_run(lab: AppPairLab) -> dict[str, Any]:
    """SIGSTOP the active while requests flow; when the passive answered, how many failed."""
    policy = load_policy(str(lab.config)).services["web"].standby
    assert policy is not None and policy.app is not None
    client = RequestClient(policy.app)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        wait_until("requests", lambda: client.answered_by("web1", 0), 30)
        stopped = time.monotonic()
        os.kill(lab.pid("web1"), signal.SIGSTOP)
        first = wait_until("web2 answering", lambda: client.answered_by("web2", stopped), 60)
        time.sleep(1.0)
        os.kill(lab.pid("web1"), signal.SIGCONT)
        resumed = time.monotonic()
        back = wait_until("web1 again", lambda: client.answered_by("web1", resumed), 60)
    finally:
        client.stop.set()
        thread.join(15)
    after = [a for a in client.answers if a.ended > stopped]
    return {
        "failover_seconds": round(first.ended - stopped, 3),
        "longest_gap_seconds": round(gaps([a.ended for a in after if a.probe.ok], stopped), 3),
        "failed_requests": sum(not a.probe.ok for a in after),
        "requests": len(after),
        "errors": [a.probe.error for a in after if not a.probe.ok][:3],
        "back_seconds": round(back.ended - resumed, 3),
    }


def measure_hang(runs: int) -> str:
    reports = []
    with (
        tempfile.TemporaryDirectory(prefix="safehold-bench-app-") as tmp,
        running_pair(pair_policy(Path(tmp))) as lab,
    ):
        for i in range(runs):
            time.sleep(SETTLE_SECONDS)
            report = _hang_run(lab)
            print(f"hang run {i + 1}: {report}", file=sys.stderr)
            reports.append(report)
    return _table([{"setup": "generated, active stopped (SIGSTOP)", "runs": reports}])


def _failed(report: dict[str, Any]) -> str:
    return f"{report['failed_requests']}/{report['requests']}"


def measure_app(runs: int, json_out: Path | None) -> str:
    rows = []
    for name, edit in VARIANTS:
        with (
            tempfile.TemporaryDirectory(prefix="safehold-bench-app-") as tmp,
            running_pair(pair_policy(Path(tmp)), edit) as lab,
        ):
            reports = []
            for i in range(runs):
                time.sleep(SETTLE_SECONDS)
                report = _drill(lab.config)
                print(
                    f"{name} run {i + 1}: passive after {report['failover_seconds']} s,"
                    f" {report['failed_requests']} of {report['requests']} failed, active"
                    f" back after {report['back_seconds']} s",
                    file=sys.stderr,
                )
                reports.append(report)
        rows.append({"setup": name, "runs": reports})
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))
    return _table(rows)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setup | runs | passive answers after the kill, s | longest gap, s"
        " | failed requests | active serving again after its start, s |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        got = row["runs"]
        lines.append(
            f"| {row['setup']} | {len(got)} | {spread([r['failover_seconds'] for r in got])}"
            f" | {spread([r['longest_gap_seconds'] for r in got])}"
            f" | {', '.join(_failed(r) for r in got)}"
            f" | {spread([r['back_seconds'] for r in got if r['back_seconds'] is not None])} |"
        )
    return "\n".join(lines)
