"""What a new user hit in the first week (issue 14): each rough edge, as a user meets it."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from safehold.service.history import JobHistory
from tests.conftest import CLI
from tests.e2e.test_cli import make_tree, snapshots
from tests.e2e.test_faults import item_errors, one_line_error
from tests.e2e.test_status_cli import run, setup
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def with_env(cli: CLI, **env: str) -> CLI:
    return CLI(cli.repo, {**cli.env, **env})


def test_demo_script_succeeds_on_a_tree_with_links_that_leave_it(tmp_path: Path) -> None:
    """The README's first command, on a directory whose relative symlinks point outside it
    (as /usr/share/doc's do): the comparison looks at the links, never follows them."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "shared.js").write_text("var x = 1;\n")
    tree = make_tree(tmp_path / "tree")
    (tree / "sub" / "jquery.js").symlink_to("../../outside/shared.js")
    (tree / "dangling").symlink_to("../nowhere")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("SAFEHOLD_")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"restored tree is identical to {tree}"), last
    assert "symlink targets compared" in last
    work = last.rsplit(" ", 1)[-1]
    assert os.readlink(f"{work}/restore{tree}/sub/jquery.js") == "../../outside/shared.js"
    subprocess.run(["rm", "-rf", work], check=True)


def test_backup_names_each_missing_path_and_records_only_what_was_read(
    cli: CLI, tmp_path: Path
) -> None:
    cli.init()
    missing = tmp_path / "nonexistent" / "path"
    line = one_line_error(cli.run("backup", missing, check=False), 1)
    assert f"{missing}: No such file or directory" in line and "nothing recorded" in line
    assert snapshots(cli) == []

    real = make_tree(tmp_path / "real")
    proc = cli.run("backup", real, missing, check=False)
    assert proc.returncode == 3, proc.stderr
    assert item_errors(proc) == [f"error: {missing}: No such file or directory"]
    (snapshot,) = snapshots(cli)
    assert snapshot["paths"] == [str(real)]


def test_status_quiet_prints_nothing(tmp_path: Path) -> None:
    config = setup(tmp_path, "1h")
    quiet = run("status", "--config", str(config), "--quiet")
    assert quiet.returncode == 5 and quiet.stdout == "" and quiet.stderr == ""


def test_jobs_rejects_an_unknown_outcome_and_job_and_shows_summaries(tmp_path: Path) -> None:
    config = setup(tmp_path, "1h")
    history = JobHistory(tmp_path / "state" / "history.sqlite")
    now = datetime.now(UTC)
    run_id = history.start("app/files backup", "backup", "app/files", "backup", now, now=now)
    summary = {"message_type": "summary", "snapshot_id": "ab" * 32, "data_added": 12}
    history.finish(run_id, "success", details={"commands": [summary]}, now=now)
    history.close()

    bogus = run("jobs", "--config", str(config), "--outcome", "bogus")
    assert bogus.returncode == 1 and "unknown outcome 'bogus'" in bogus.stderr
    assert "success" in bogus.stderr and bogus.stdout == ""
    nope = run("jobs", "--config", str(config), "--job", "nope")
    assert nope.returncode == 1, nope.stdout
    assert "no job named 'nope'" in nope.stderr and "'app/files backup'" in nope.stderr
    none_failed = run("jobs", "--config", str(config), "--outcome", "failed")
    assert none_failed.returncode == 0 and none_failed.stdout == "no runs\n"

    listed = run("--json", "jobs", "--config", str(config), "--job", "app/files backup")
    (found,) = json.loads(listed.stdout)["runs"]
    assert found["outcome"] == "success" and found["summaries"] == [summary]


def test_a_wrong_password_names_where_it_came_from(cli: CLI, tmp_path: Path) -> None:
    cli.init()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("wrong\n")
    both = with_env(cli, SAFEHOLD_PASSWORD_FILE=str(wrong))  # SAFEHOLD_PASSWORD is set too
    line = one_line_error(both.run("snapshots", check=False), 12)
    assert f"from SAFEHOLD_PASSWORD_FILE {wrong}" in line
    assert "(SAFEHOLD_PASSWORD is set too but comes later)" in line
    line = one_line_error(cli.run("snapshots", "--password-file", wrong, check=False), 12)
    assert f"from --password-file {wrong}" in line
    line = one_line_error(
        with_env(cli, SAFEHOLD_PASSWORD="nope").run("ls", "latest", check=False), 12
    )
    assert "from SAFEHOLD_PASSWORD:" in line


def test_a_repository_path_that_is_a_file(cli: CLI, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a repository")
    for args in (["snapshots"], ["init"]):
        line = one_line_error(cli.run("-r", a_file, *args, check=False), 10)
        assert f"{a_file} is not a safehold repository: it is a file" in line
        assert "does not exist" not in line
    assert a_file.read_text() == "not a repository"


def test_an_unreachable_s3_endpoint_is_one_plain_line(cli: CLI) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    location = f"s3://bucket/repo?endpoint={endpoint}&region=us-east-1&retries=1"
    s3 = with_env(cli, AWS_ACCESS_KEY_ID="id", AWS_SECRET_ACCESS_KEY="secret")
    line = one_line_error(s3.run("-r", location, "snapshots", check=False), 1)
    assert line.startswith(f"safehold: cannot reach {endpoint} (connection refused; 2 attempts")
    assert "Generic S3 error" not in line
    verbose = s3.run("-r", location, "snapshots", "--verbose", check=False)
    assert verbose.returncode == 1 and b"error sending request" in verbose.stderr
