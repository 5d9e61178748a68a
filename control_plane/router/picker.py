"""Picker: combine scorer outputs into one choice, with an imbalance guard.

    total(w) = Σ_s weight[s] · score_s(w)          (ties broken by lower load, then worker id)

Imbalance guard (after SGLang's cache-aware router): let w* be the best-scoring worker and m the least
load among candidates. If

    load(w*) − m > balance_abs_threshold   and   load(w*) > balance_rel_threshold · m

the cache gain is not worth the queue: the picker takes the least-loaded candidate instead (reason
`imbalance_guard`). Defaults: abs 8 requests, rel 1.5. So a hot prefix spreads once its holder has
more than 8 requests above the idlest worker, and is kept together below that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from control_plane.router.types import WorkerState


@dataclass(frozen=True)
class Pick:
    index: int
    score: float
    guarded: bool


def weighted_totals(scores: Mapping[str, Sequence[float]], weights: Mapping[str, float],
                    num_candidates: int) -> list[float]:
    totals = [0.0] * num_candidates
    for name, values in scores.items():
        weight = weights.get(name, 0.0)
        for i, value in enumerate(values):
            totals[i] += weight * value
    return totals


def pick(candidates: Sequence[WorkerState], totals: Sequence[float], *,
         balance_abs_threshold: int, balance_rel_threshold: float) -> Pick:
    """Index of the chosen candidate. `candidates` must be non-empty."""
    assert candidates, "picker called with no candidates: the pipeline's filters should have raised"
    best = min(range(len(candidates)),
               key=lambda i: (-totals[i], candidates[i].load, candidates[i].worker_id))
    idlest = min(range(len(candidates)), key=lambda i: (candidates[i].load, candidates[i].worker_id))
    top, low = candidates[best].load, candidates[idlest].load
    if top - low > balance_abs_threshold and top > balance_rel_threshold * low:
        return Pick(idlest, totals[idlest], guarded=True)
    return Pick(best, totals[best], guarded=False)
