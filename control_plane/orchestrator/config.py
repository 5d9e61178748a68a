"""`OrchestratorConfig`: timeouts and fault budgets of one generation (nested in `GatewayConfig`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrchestratorConfig:
    """Seconds for timeouts; counts for budgets.

    `first_token_timeout_seconds` bounds prefill + first token on a worker, `token_timeout_seconds` the
    gap between two tokens, `unary_timeout_seconds` every unary worker call (prefill aside: stats,
    health, drain). `max_retries`: attempts on other workers before the first token; `max_migrations`:
    resumes of a stream after its worker failed. `pd_min_uncached_tokens`: the disaggregated path is
    taken only when at least this many prompt tokens are not cached anywhere. `block_size`: tokens per
    KV block, the workers' (block hashes and cached-token counts depend on it)."""

    first_token_timeout_seconds: float = 60.0
    token_timeout_seconds: float = 30.0
    unary_timeout_seconds: float = 5.0
    max_retries: int = 2
    max_migrations: int = 2
    pd_min_uncached_tokens: int = 256
    block_size: int = 16

    def __post_init__(self) -> None:
        for name in ("first_token_timeout_seconds", "token_timeout_seconds", "unary_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_retries", "max_migrations", "pd_min_uncached_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
