"""Scorers: each maps (request, candidates, prefix match) to one score in [0, 1] per candidate.

One module per scorer, each with its formula in its docstring. The picker combines them as a weighted
sum (weights in `RouterConfig`). A scorer is pure: it reads its inputs and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from control_plane.router.types import PrefixHoldings, RouteRequest, WorkerState


class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, request: RouteRequest, candidates: Sequence[WorkerState],
              prefix: PrefixHoldings) -> list[float]:
        """One score in [0, 1] per candidate, in the candidates' order."""
        ...
