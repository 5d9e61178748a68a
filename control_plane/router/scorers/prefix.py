"""Prefix scorer: prefer the worker that can reuse most of the prompt's KV without recomputing.

    score(w) = max over tiers t of  credit[t] · blocks(w, t) / num_blocks

where blocks(w, "memory") is the number of leading prompt blocks in worker w's own KV pool and
blocks(w, "redis" | "disk") the leading blocks in the shared tiers (the same for every worker). Default
credits: memory 1.0 > redis 0.5 > disk 0.25 — a block in the worker's memory costs nothing, one in Redis
a network read, one on disk a slower read, and all three beat recomputing it. A prompt with no full
block scores 0 everywhere, so the scorer is neutral for short prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from control_plane.router.types import TIERS, PrefixMatch, RouteRequest, WorkerState

DEFAULT_TIER_CREDITS: Mapping[str, float] = {"memory": 1.0, "redis": 0.5, "disk": 0.25}


@dataclass(frozen=True)
class PrefixScorer:
    tier_credits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_CREDITS))
    name: str = "prefix"

    def __post_init__(self) -> None:
        for tier in TIERS:
            credit = self.tier_credits.get(tier, 0.0)
            if not 0.0 <= credit <= 1.0:
                raise ValueError(f"tier_credits.{tier} must be in [0, 1], got {credit}")

    def score(self, request: RouteRequest, candidates: Sequence[WorkerState],
              prefix: PrefixMatch) -> list[float]:
        if prefix.num_blocks <= 0:
            return [0.0] * len(candidates)
        return [self._score_one(w.worker_id, prefix) for w in candidates]

    def _score_one(self, worker_id: str, prefix: PrefixMatch) -> float:
        best = 0.0
        for tier in TIERS:
            blocks = min(prefix.blocks_for(worker_id, tier), prefix.num_blocks)
            best = max(best, self.tier_credits.get(tier, 0.0) * blocks / prefix.num_blocks)
        return best
