"""Retrying transient store failures: exponential backoff with full jitter, then one clear error.

Every remote store runs each request through ``RetryPolicy.run``. obstore's own retries
are turned off (``max_retries=0``) because they hide what this layer must know:

- obstore does not retry a PUT that timed out (a stalled upload failed at once);
- when a create-if-absent PUT is retried after its first try took effect on the server
  but the reply was lost, the retry gets 412/409 and obstore reports "already exists":
  the caller must then compare contents (``cloud.ObstoreStore.put``), which it can only
  do if it knows a retry happened;
- the final error should say how many attempts were made over how long.

Only ``TransientStoreError`` is retried: timeouts, connection resets, 5xx, 429.
``NotFound``, ``AlreadyExists`` and access errors are answers, not failures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from safehold.errors import StoreRetriesExhausted, StoreUnreachable, TransientStoreError

__all__ = ["DEFAULT_ATTEMPTS", "RetryPolicy"]

T = TypeVar("T")

DEFAULT_ATTEMPTS = 6  # 5 retries: waits of up to 0.25, 0.5, 1, 2, 4 s (about 8 s at most)


@dataclass
class RetryPolicy:
    """``attempts`` tries in all; before retry n, sleep uniform(0, min(cap, base * 2**(n-1)))."""

    attempts: int = DEFAULT_ATTEMPTS
    base: float = 0.25
    cap: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry: int) -> float:
        """Full jitter (AWS architecture blog): spreads clients that failed together."""
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** (retry - 1)))

    def run(
        self,
        where: str,
        action: str,
        key: str,
        call: Callable[[int], T],
    ) -> T:
        """``call(attempt)`` until it returns or raises something other than a transient error.

        ``attempt`` counts from 1, so a caller can tell a retry from a first try.
        """
        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                return call(attempt)
            except TransientStoreError as exc:
                if attempt == self.attempts:
                    elapsed = time.monotonic() - started
                    if isinstance(exc, StoreUnreachable):
                        plural = "s" if self.attempts != 1 else ""
                        tries = f"{self.attempts} attempt{plural} over {elapsed:.1f} s"
                        raise StoreUnreachable(exc.args[0], f"{exc.args[1]}; {tries}") from exc
                    raise StoreRetriesExhausted(
                        where,
                        f"{action} {key!r}" if key else action,
                        self.attempts,
                        f"{elapsed:.1f}",
                        exc.args[-1],
                    ) from exc
                self.sleep(self.delay(attempt))
        raise AssertionError("unreachable: attempts >= 1")
