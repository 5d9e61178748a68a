"""Load scorer: prefer the least loaded worker.

    load(w)  = running(w) + waiting(w) + unreported(w)
    score(w) = 1 − load(w) / (max over candidates of load + 1)

`unreported` counts requests this gateway routed to w after w's last stats report and still in flight,
so a burst routed between two reports does not all land on the worker that looked idle. The +1 keeps
the score defined when every candidate is idle (all score 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from control_plane.router.types import PrefixHoldings, RouteRequest, WorkerState


@dataclass(frozen=True)
class LoadScorer:
    name: str = "load"

    def score(self, request: RouteRequest, candidates: Sequence[WorkerState],
              prefix: PrefixHoldings) -> list[float]:
        if not candidates:
            return []
        peak = max(w.load for w in candidates)
        return [1.0 - w.load / (peak + 1) for w in candidates]
