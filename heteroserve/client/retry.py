"""Retries with exponential backoff, on retryable errors only.

An attempt is retried when it raised a `HeteroserveError` whose `retryable` is True (unavailable,
timeout, capacity, rate limited) and no data of the response had reached the caller yet; at most
`max_retries` times. Delay before retry k (k = 1, 2, ...): min(max_backoff, base · 2^(k-1)) · u with u
uniform in [0.5, 1] (jitter, so many clients do not retry in lockstep).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.errors import HeteroserveError


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_seconds: float = 0.1
    max_backoff_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError("backoff_seconds and max_backoff_seconds must be >= 0")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True when attempt number `attempt` (1-based) failing with `error` may be tried again."""
        return isinstance(error, HeteroserveError) and error.retryable and attempt <= self.max_retries

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return base * (0.5 + 0.5 * (rng or random).random())
