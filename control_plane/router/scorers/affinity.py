"""Session-affinity scorer: keep a session on the worker that served its previous turn.

    score(w) = 1 if w is the worker that last served request.session_id, else 0

Neutral (all 0) for requests without a session id. A chat session's next turn repeats the previous
turns as its prefix, so this mostly agrees with the prefix scorer; it matters before the prefix
index has caught up with the worker's KV events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from control_plane.router.types import PrefixHoldings, RouteRequest, WorkerState


@dataclass(frozen=True)
class AffinityScorer:
    name: str = "affinity"

    def score(self, request: RouteRequest, candidates: Sequence[WorkerState],
              prefix: PrefixHoldings) -> list[float]:
        target = request.affinity_worker
        return [1.0 if target and w.worker_id == target else 0.0 for w in candidates]
