"""Load scorer: prefer the least loaded worker.

    load(w)  = running(w) + waiting(w) + unreported(w)
    score(w) = 1 − load(w) / (max over candidates of load + 1)

`unreported` counts requests this gateway routed to w after w's last stats report and still in flight,
so a burst routed between two reports does not all land on the worker that looked idle. The +1 keeps
the score defined when every candidate is idle (all score 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from control_plane.router.table import Candidates
from control_plane.router.types import PrefixHoldings, RouteRequest


@dataclass(frozen=True)
class LoadScorer:
    name: str = "load"

    def score(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings) -> np.ndarray:
        if not len(candidates):
            return np.zeros(0, dtype=np.float64)
        load = candidates.load
        result: np.ndarray = 1.0 - load / (int(load.max()) + 1)
        return result
