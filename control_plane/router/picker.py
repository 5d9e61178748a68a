"""Picker: combine scorer outputs into one choice, with an imbalance guard.

    total(w) = Σ_s weight[s] · score_s(w)          (scoring "weighted", the default)
    total(w) = −cost(w)                            (scoring "cost": scorers/cost.py)
    best = argmax total                            (ties broken by lower load, then worker id)

Imbalance guard (after SGLang's cache-aware router): let w* be the best-scoring worker and m the least
load among candidates. If

    load(w*) − m > balance_abs_threshold   and   load(w*) > balance_rel_threshold · m

the cache gain is not worth the queue: the picker takes the least-loaded candidate instead (reason
`imbalance_guard`). Defaults: abs 8 requests, rel 1.5. With the cost scoring the guard is a backstop:
the cost already spreads a hot prefix once its holder's queue costs more tokens than recomputing it;
whatever the scoring, no holder gets more than 8 requests (and 1.5×) above the idlest worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pick:
    index: int
    score: float
    guarded: bool


def weighted_totals(scores: Mapping[str, np.ndarray], weights: Mapping[str, float],
                    num_candidates: int) -> np.ndarray:
    """Σ weight · score, summed in the scorers' order (the same float operations for every worker)."""
    totals = np.zeros(num_candidates, dtype=np.float64)
    for name, values in scores.items():
        weight = weights.get(name, 0.0)
        if weight:  # a zero weight adds exactly 0.0 to every total (scores are finite): skip its two calls
            totals += weight * values
    return totals


def pick(load: np.ndarray, totals: np.ndarray, *, balance_abs_threshold: int,
         balance_rel_threshold: float) -> Pick:
    """Index of the chosen candidate. `load` and `totals` are per candidate, candidates in worker-id
    order (so the first of equals is the lowest id); they must be non-empty."""
    assert len(load), "picker called with no candidates: the pipeline's filters should have raised"
    tied = np.flatnonzero(totals == totals.max())
    best = int(tied[np.argmin(load[tied])])  # argmin: first of the least loaded, i.e. lowest id
    idlest = int(np.argmin(load))
    top, low = int(load[best]), int(load[idlest])
    if top - low > balance_abs_threshold and top > balance_rel_threshold * low:
        return Pick(idlest, float(totals[idlest]), guarded=True)
    return Pick(best, float(totals[best]), guarded=False)
