"""Scorers: each maps (request, candidates, prefix match) to one score in [0, 1] per candidate.

One module per scorer, each with its formula in its docstring. With `RouterConfig.scoring = "weighted"`
(the default) the picker combines them as a weighted sum (weights in `RouterConfig`); with `"cost"`,
cost.py turns the prefix score into tokens saved and weighs them against the queued work, in tokens.
A scorer is pure: it reads its inputs and changes nothing. Scores are
a float64 numpy array in the candidates' order; a scorer's cost is O(candidates) numpy work plus
O(workers its request names) Python (prefix holders, the session's worker), never a Python loop over
every candidate.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from control_plane.router.table import Candidates
from control_plane.router.types import PrefixHoldings, RouteRequest


class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings) -> np.ndarray:
        """One score in [0, 1] per candidate, in the candidates' order."""
        ...
