"""``safehold runbook``: every command in it parses with the real CLI, Markdown and HTML;
the daemon stores it in its state directory and in the repository, again only when the
policy changed, and ``runbook --stored`` reads it back from the repository alone."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from safehold.dr.load import load_policy
from safehold.dr.runbook import build_runbook, publish_runbooks, render
from safehold.dr.status import open_policy_repository
from tests.dr.test_plan_cmd import SOURCES, _parse
from tests.policy import daemon_table, files_source, repository_table
from tests.service.daemon_helpers import (
    SAFEHOLD,
    DaemonRun,
    clean_env,
    init_repo,
    write_password,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "safehold.example.toml"


def test_every_runbook_command_parses_with_the_real_cli(tmp_path: Path) -> None:
    config = tmp_path / "all.toml"
    config.write_text(
        '[repositories.r]\nlocation = "/r"\npassword_file = "/pw"\n'
        '[[repositories.r.replicas]]\nlocation = "s3://replica/r"\n' + SOURCES
    )
    books = [build_runbook(load_policy(config), str(config), "all")]
    books.append(build_runbook(load_policy(EXAMPLE), str(EXAMPLE), "sync"))
    seen = set()
    for book in books:
        for argv in book.safehold_commands():
            ctx = _parse(argv)
            assert ctx.command.name is not None, argv
            seen.add(ctx.command_path.removeprefix("safehold "))
    assert seen == {
        "status", "cuts", "recover", "restore", "replicate",
        "pg restore", "sqlite restore", "redis restore", "mysql restore",
    }  # fmt: skip
    text = render(books[1], "md")
    assert text.startswith("# Recovering service sync\n")
    assert "back within 1h (RTO), losing at most 15m of data (RPO)" in text
    assert f"safehold recover sync -c {EXAMPLE} --latest --dry-run\n" in text
    assert "--repo 's3://backups-us/sync?region=us-east-2'" in text  # the replica's section
    page = render(books[1], "html")
    assert page.startswith("<!doctype html>") and "<pre><code>safehold status" in page
    assert "SELECT count(*) &gt; 0 FROM accounts" in page


def _policy(tmp_path: Path, description: str) -> Path:
    password = tmp_path / "password"
    config = tmp_path / "safehold.toml"
    config.write_text(
        repository_table(tmp_path / "repo", password)
        + f'[services.app]\ndescription = "{description}"\n'
        + files_source("app", tmp_path, backup="off")
        + daemon_table(tmp_path / "state", metrics="off", status_interval="1h")
    )
    return config


def test_the_daemon_stores_the_runbook_where_the_backups_are(tmp_path: Path) -> None:
    password = write_password(tmp_path / "password")
    init_repo(str(tmp_path / "repo"), password)
    config = _policy(tmp_path, "first version")
    daemon = DaemonRun(config, tmp_path / "state").start()
    try:
        stored = tmp_path / "state" / "runbook-app.md"
        deadline = time.monotonic() + 60
        while not stored.exists() or "runbook of app stored" not in daemon.text():
            assert time.monotonic() < deadline, daemon.text()
            time.sleep(0.3)
    finally:
        assert daemon.stop() == 0
    assert "first version" in stored.read_text()
    policy = load_policy(config)
    # unchanged: nothing written again; changed: a new one in both places
    assert (
        publish_runbooks(policy, str(config), str(tmp_path / "state"), open_policy_repository) == []
    )
    config = _policy(tmp_path, "second version")
    done = publish_runbooks(
        load_policy(config), str(config), str(tmp_path / "state"), open_policy_repository
    )
    assert done == [
        f"runbook of app written to {stored}",
        "runbook of app stored in repository main",
    ]
    proc = subprocess.run(
        [
            *SAFEHOLD,
            "--repo",
            tmp_path / "repo",
            "--password-file",
            password,
            "runbook",
            "app",
            "--stored",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "second version" in proc.stdout and proc.stdout == stored.read_text()
