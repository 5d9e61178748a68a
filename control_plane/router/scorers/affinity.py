"""Session-affinity scorer: keep a session on the worker that served its previous turn.

    score(w) = 1 if w is the worker that last served request.session_id, else 0

Neutral (all 0) for requests without a session id. A chat session's next turn repeats the previous
turns as its prefix, so this mostly agrees with the prefix scorer; it matters before the prefix
index has caught up with the worker's KV events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from control_plane.router.table import Candidates
from control_plane.router.types import PrefixHoldings, RouteRequest


@dataclass(frozen=True)
class AffinityScorer:
    name: str = "affinity"

    def score(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings) -> np.ndarray:
        out = np.zeros(len(candidates), dtype=np.float64)
        if request.affinity_worker:
            out[candidates.where([request.affinity_worker])[1]] = 1.0
        return out
