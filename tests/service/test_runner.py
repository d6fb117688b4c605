"""The job runner's record of a failure: its last line, with credentials masked."""

from __future__ import annotations

from pathlib import Path

from safehold.dr.jobs import JobCommand
from safehold.service.runner import run_command


def test_a_failed_jobs_error_line_masks_credentials(tmp_path: Path) -> None:
    repo = tmp_path / "password=s3cretpw" / "repo"  # echoed by the error, as a DSN might be
    result = run_command(
        JobCommand(["--repo", str(repo), "snapshots"], {"SAFEHOLD_PASSWORD": "pw"})
    )
    assert result.outcome == "failed" and result.error is not None
    assert "s3cretpw" not in result.error and "***" in result.error, result.error
