"""Hysteresis: when a freshly solved plan replaces the running one.

Rules, in order:
1. No running plan: accept ("initial").
2. Same pools and counts and same document: reject ("unchanged").
3. Some pool grows (a scale-up, possibly with other pools shrinking): accept at once ("scale-up"),
   because under-provisioning costs SLOs now.
4. Only shrinks: accept once the solver has proposed a smaller fleet `scale_down_confirmations`
   solves in a row, the first of them at least `scale_down_stabilization_seconds` ago
   ("scale-down"); until then reject ("scale-down pending i/n"). A brief dip in traffic therefore
   never drains a worker that is needed again a moment later (the HPA's stabilization window).
5. Same counts, and some class's share of some pool (`SolvedPlan.routing()`) moved by more than
   `reweight_threshold` (default 0.1): accept ("reweight"); costs nothing to apply. Smaller moves are
   noise of the traffic estimate and are not published.

The solver's own churn penalty (a cost per changed instance) keeps it from proposing reshuffles
that save little; this policy adds the time dimension.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from control_plane.planner.types import SolvedPlan


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str


class PlanPolicy:
    """Stateful (counts consecutive scale-down proposals); owned by the planner loop."""

    def __init__(self, scale_down_confirmations: int = 2, reweight_threshold: float = 0.1,
                 scale_down_stabilization_seconds: float = 0.0) -> None:
        if scale_down_confirmations < 1:
            raise ValueError(f"scale_down_confirmations must be >= 1, got {scale_down_confirmations}")
        if not 0 <= reweight_threshold <= 1:
            raise ValueError(f"reweight_threshold must be in [0, 1], got {reweight_threshold}")
        self.scale_down_confirmations = scale_down_confirmations
        self.reweight_threshold = reweight_threshold
        self.scale_down_stabilization_seconds = scale_down_stabilization_seconds
        self._down_streak = 0
        self._down_since = 0.0

    def decide(self, running: SolvedPlan | None, proposed: SolvedPlan, now: float | None = None) -> Decision:
        """Whether `proposed` replaces `running`; `now` in monotonic seconds (default: the clock)."""
        now = time.monotonic() if now is None else now
        if running is None:
            return self._done("initial")
        before, after = running.counts(), proposed.counts()
        grows = any(n > before.get(p, 0) for p, n in after.items())
        shrinks = any(after.get(p, 0) < n for p, n in before.items())
        if grows:
            return self._done("scale-up")
        if shrinks:
            self._down_streak += 1
            if self._down_streak == 1:
                self._down_since = now
            waited = now - self._down_since >= self.scale_down_stabilization_seconds
            if self._down_streak >= self.scale_down_confirmations and waited:
                return self._done("scale-down")
            return Decision(False, f"scale-down pending {self._down_streak}/{self.scale_down_confirmations}")
        self._down_streak = 0
        if routing_moved(running.routing(), proposed.routing(), self.reweight_threshold):
            return Decision(True, "reweight")
        return Decision(False, "unchanged")

    def _done(self, reason: str) -> Decision:
        self._down_streak = 0
        return Decision(True, reason)


def routing_moved(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
                  threshold: float) -> bool:
    """True if some (class, pool) share differs by more than `threshold` (absent = 0)."""
    for cls in set(before) | set(after):
        a, b = before.get(cls, {}), after.get(cls, {})
        if any(abs(a.get(p, 0.0) - b.get(p, 0.0)) > threshold for p in set(a) | set(b)):
            return True
    return False
