"""RetryPolicy: which errors are retried, how long it waits, and what it says at the end."""

from __future__ import annotations

import random

import pytest

from safehold.errors import NotFound, StoreRetriesExhausted, TransientStoreError
from safehold.storage.retry import RetryPolicy


def policy(attempts: int = 4) -> tuple[RetryPolicy, list[float]]:
    waits: list[float] = []
    return RetryPolicy(attempts=attempts, sleep=waits.append, rng=random.Random(1)), waits


def test_transient_errors_are_retried_until_success() -> None:
    retry, waits = policy()
    seen: list[int] = []

    def call(attempt: int) -> str:
        seen.append(attempt)
        if attempt < 3:
            raise TransientStoreError("s3://b", "write 'k': SlowDown")
        return "done"

    assert retry.run("s3://b", "write", "k", call) == "done"
    assert seen == [1, 2, 3]
    assert len(waits) == 2


def test_answers_are_not_retried() -> None:
    retry, waits = policy()
    calls = []

    def call(attempt: int) -> None:
        calls.append(attempt)
        raise NotFound("k")

    with pytest.raises(NotFound):
        retry.run("s3://b", "read", "k", call)
    assert calls == [1]
    assert waits == []


def test_gives_up_with_one_line_naming_the_object_and_the_attempts() -> None:
    retry, waits = policy(attempts=5)

    def call(attempt: int) -> None:
        raise TransientStoreError("s3://b/p", "write 'data/ab/abcd': 503 SlowDown")

    with pytest.raises(StoreRetriesExhausted) as excinfo:
        retry.run("s3://b/p", "write", "data/ab/abcd", call)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("s3://b/p: gave up on write 'data/ab/abcd' after 5 attempts")
    assert message.endswith("last error: write 'data/ab/abcd': 503 SlowDown")
    assert len(waits) == 4


def test_backoff_is_exponential_with_full_jitter_and_a_cap() -> None:
    retry = RetryPolicy(base=0.25, cap=2.0, rng=random.Random(7))
    for n in range(1, 10):
        bound = min(2.0, 0.25 * 2 ** (n - 1))
        samples = [retry.delay(n) for _ in range(200)]
        assert all(0 <= s <= bound for s in samples)
        assert max(samples) > bound * 0.8  # jitter spreads over the whole range
        assert min(samples) < bound * 0.2
