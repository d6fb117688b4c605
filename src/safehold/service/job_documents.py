"""``safehold jobs --json``'s document, built in one place for the CLI and the dashboard's
API: the newest runs with their filters checked against the history and the policy."""

from __future__ import annotations

from typing import Any

from safehold.dr.policy import Policy
from safehold.errors import InvalidArgument
from safehold.service.history import OUTCOMES, JobHistory, JobRun

__all__ = ["check_outcome", "find_runs", "jobs_document", "run_document"]


def check_outcome(outcome: str | None) -> None:
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidArgument(f"unknown outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")


def run_document(run: JobRun) -> dict[str, object]:
    """A run as JSON, with the JSON summary each of its commands printed."""
    details = run.details or {}
    return {**run.to_dict(), "summaries": details.get("commands", [])}


def _unknown_job(policy: Policy, job: str) -> None:
    """A job name with no run that the policy does not define either: say so, and list them."""
    from safehold.dr.jobs import archiver_jobs, replica_after_backup
    from safehold.dr.schedule import JobId, scheduled_jobs

    names = {str(found) for found, _ in scheduled_jobs(policy)}
    names.update(str(found) for found in archiver_jobs(policy))
    for repository in policy.repositories:
        for location in replica_after_backup(policy, repository):
            names.add(str(JobId("replicate", repository, location)))
    if job not in names:
        known = ", ".join(repr(name) for name in sorted(names)) or "none"
        raise InvalidArgument(f"no job named {job!r} in the policy; its jobs: {known}")


def find_runs(
    policy: Policy, history: JobHistory, job: str | None, outcome: str | None, limit: int
) -> list[JobRun]:
    """The newest ``limit`` runs, of ``job`` and ``outcome`` when given; an unknown
    outcome, or a job that neither ran nor is in the policy, is an error."""
    check_outcome(outcome)
    runs = history.runs(limit=limit, job=job, outcome=outcome)
    if job is not None and not runs and history.last(job) is None:
        _unknown_job(policy, job)
    return runs


def jobs_document(runs: list[JobRun]) -> dict[str, Any]:
    return {"message_type": "jobs", "runs": [run_document(run) for run in runs]}
