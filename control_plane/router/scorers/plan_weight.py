"""Plan-weight scorer: follow the placement plan's share of this request class per pool.

    score(w) = weight[class][pool(w)] / max over candidate pools of weight[class][pool]

With no plan (no weights) every candidate scores 1 and the scorer is neutral. A pool the plan gives
no share scores 0 (the `plan_pools` filter normally removed it already).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from control_plane.router.table import Candidates
from control_plane.router.types import PrefixHoldings, RouteRequest


@dataclass(frozen=True)
class PlanWeightScorer:
    name: str = "plan_weight"

    def score(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings) -> np.ndarray:
        ones = np.ones(len(candidates), dtype=np.float64)
        if not request.pool_weights or not len(candidates):
            return ones
        weights = candidates.table.pool_values(dict(request.pool_weights))[candidates.pool_code]
        peak = float(weights.max())
        if peak <= 0.0:
            return ones
        result: np.ndarray = weights / peak
        return result
