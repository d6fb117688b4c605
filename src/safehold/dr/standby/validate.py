"""The generated configuration checked by the engines that will run it.

``haproxy -c`` checks HAProxy's file whole. ``patroni --validate-config`` checks a node's
file (types, the data and bin directories, etcd reachable) but refuses loopback connect
addresses, which Patroni itself runs with; so it reads a copy whose connect addresses
name a host that cannot be loopback (``NODE.invalid``), the rest unchanged, with
``--ignore-listen-port`` (a running cluster holds its own ports).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safehold.dr.standby.config import StandbySetup, patroni_config
from safehold.errors import SafeholdError
from safehold.sources import external

__all__ = ["ConfigRefused", "Validation", "find_patroni", "validate_haproxy", "validate_patroni"]


class ConfigRefused(SafeholdError):
    """{0} refused {1}: {2}"""

    exit_code = 2


@dataclass(frozen=True)
class Validation:
    """What checked one file, and what it said (``checked`` False: could not be run)."""

    file: str
    checker: str
    checked: bool
    note: str = ""


def find_patroni() -> str | None:
    """The ``patroni`` installed beside this interpreter (safehold's ``standby`` extra),
    else the one on PATH."""
    beside = Path(sys.executable).parent / "patroni"
    return str(beside) if beside.is_file() else shutil.which("patroni")


def _first_problem(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    alerts = [line for line in lines if "[ALERT]" in line]
    chosen = alerts or lines
    return " | ".join(chosen[:3]) or "(no output)"


def validate_haproxy(path: Path, shown: Path, haproxy: str = "haproxy") -> Validation:
    """``path`` checked; ``shown``: the name it goes by (where it will be written)."""
    proc = external.run([haproxy, "-c", "-f", str(path)], check=False)
    if proc.returncode != 0:
        output = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
        raise ConfigRefused(f"{haproxy} -c", shown, _first_problem(output))
    return Validation(str(shown), "haproxy -c", True)


def validate_patroni(
    setup: StandbySetup, path: Path, shown: Path, patroni: str | None
) -> Validation:
    if patroni is None:
        note = "patroni not found (install safehold[standby] or put patroni on PATH)"
        return Validation(str(shown), "patroni --validate-config", False, note)
    node = setup.node(path.stem.removeprefix("patroni-"))
    config = patroni_config(setup, node)
    config["restapi"]["connect_address"] = f"{node.name}.invalid:{node.rest_port}"
    config["postgresql"]["connect_address"] = f"{node.name}.invalid:{node.port}"
    with tempfile.TemporaryDirectory(prefix="safehold-validate-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(json.dumps(config))
        proc = external.run(
            [patroni, "--validate-config", "--ignore-listen-port", str(copy)], check=False
        )
    if proc.returncode != 0:
        output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        raise ConfigRefused("patroni --validate-config", shown, _first_problem(output))
    note = "connect addresses as NODE.invalid"
    return Validation(str(shown), "patroni --validate-config", True, note)
