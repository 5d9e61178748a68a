"""Plan-weight scorer: follow the placement plan's share of this request class per pool.

    score(w) = weight[class][pool(w)] / max over candidate pools of weight[class][pool]

With no plan (no weights) every candidate scores 1 and the scorer is neutral. A pool the plan gives
no share scores 0 (the `plan_pools` filter normally removed it already).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from control_plane.router.types import PrefixHoldings, RouteRequest, WorkerState


@dataclass(frozen=True)
class PlanWeightScorer:
    name: str = "plan_weight"

    def score(self, request: RouteRequest, candidates: Sequence[WorkerState],
              prefix: PrefixHoldings) -> list[float]:
        weights = request.pool_weights
        if not weights:
            return [1.0] * len(candidates)
        peak = max((weights.get(w.pool, 0.0) for w in candidates), default=0.0)
        if peak <= 0.0:
            return [1.0] * len(candidates)
        return [weights.get(w.pool, 0.0) / peak for w in candidates]
