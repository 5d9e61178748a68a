"""Shared inputs of the simulator tests: a deterministic length mix and constant step times."""

from __future__ import annotations

from dataclasses import dataclass


def lengths(n: int) -> list[tuple[int, int]]:
    return [(200 + (i * 7919) % 1800, 20 + (i * 104729) % 400) for i in range(n)]


@dataclass(frozen=True)
class FixedSteps:
    """Constant step times: a lone request's TTFT and TPOT are exactly these."""

    prefill: float
    decode: float

    def prefill_seconds(self, prompt_tokens: float, num_seqs: int = 1) -> float:
        return self.prefill

    def decode_step_seconds(self, batch: int, context_tokens: float) -> float:
        return self.decode

    def kv_capacity_tokens(self) -> int:
        return 1_000_000
