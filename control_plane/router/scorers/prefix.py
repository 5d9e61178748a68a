"""Prefix scorer: prefer the worker that can reuse most of the prompt's KV without recomputing.

    score(w) = max over tiers t of  credit[t] · blocks(w, t) / num_blocks

where blocks(w, "device") is the number of leading prompt blocks in worker w's own memory (its KV pool
or host-memory tier) and blocks(w, "redis" | "disk") the leading blocks in the shared tiers (the same for
every worker) or w's own disk. Default credits: device 1.0 > redis 0.5 > disk 0.25 — a block in the
worker's memory costs nothing, one in Redis a network read, one on disk a slower read, and all three
beat recomputing it. A prompt with no full block scores 0 everywhere, so the scorer is neutral for
short prompts.

Cost: every candidate not named in the match has the same score (the shared tiers' run), computed
once; only the workers the match names (memory or private-tier holders) are scored one by one:
O(candidates) numpy + O(holders) Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from control_plane.router.table import Candidates
from control_plane.router.types import CREDITED_TIERS, PrefixHoldings, RouteRequest

DEFAULT_TIER_CREDITS: Mapping[str, float] = {"device": 1.0, "redis": 0.5, "disk": 0.25}


@dataclass(frozen=True)
class PrefixScorer:
    tier_credits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_CREDITS))
    name: str = "prefix"

    def __post_init__(self) -> None:
        for tier in CREDITED_TIERS:
            credit = self.tier_credits.get(tier, 0.0)
            if not 0.0 <= credit <= 1.0:
                raise ValueError(f"tier_credits.{tier} must be in [0, 1], got {credit}")

    def score(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings) -> np.ndarray:
        if prefix.num_blocks <= 0:
            return np.zeros(len(candidates), dtype=np.float64)
        shared = self._score_one("", prefix)
        out = np.full(len(candidates), shared, dtype=np.float64)  # shared only
        nb, device = prefix.num_blocks, self.tier_credits.get("device", 0.0)
        # memory holders without a private tier: max(their device term, the shared score), one float
        # each in Python (O(holders); a few numpy calls cost more than the arithmetic on a few holders)
        workers, at = candidates.where(prefix.worker_blocks)
        if workers:
            out[at] = [max(shared, device * min(prefix.worker_blocks[w], nb) / nb) for w in workers]
        workers, at = candidates.where({w for w, _ in prefix.local_blocks})
        if workers:
            out[at] = [self._score_one(w, prefix) for w in workers]
        return out

    def score_one(self, worker_id: str, prefix: PrefixHoldings) -> float:
        """The score of one worker (0 for a prompt with no full block)."""
        return self._score_one(worker_id, prefix) if prefix.num_blocks > 0 else 0.0

    def _score_one(self, worker_id: str, prefix: PrefixHoldings) -> float:
        best = 0.0
        for tier in CREDITED_TIERS:
            blocks = min(prefix.blocks_for(worker_id, tier), prefix.num_blocks)
            best = max(best, self.tier_credits.get(tier, 0.0) * blocks / prefix.num_blocks)
        return best
