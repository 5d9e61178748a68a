"""The planner's vocabulary: demand in, a solved plan out, and the solver's call signature.

The planner never looks inside the placement library's types beyond this boundary: `solver.py`
translates `DemandClass` into the placement problem and the placement `Plan` into `SolvedPlan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.vocab import Device, Role


@dataclass(frozen=True)
class DemandClass:
    """Traffic of one request class to plan for. Rate in requests/s; histograms over
    `control_plane.traffic.LENGTH_EDGES` (may be empty: then the means are used)."""

    name: str
    rate_per_s: float
    mean_input_tokens: float
    mean_output_tokens: float
    input_histogram: tuple[int, ...] = ()
    output_histogram: tuple[int, ...] = ()


@dataclass(frozen=True)
class PoolPlan:
    """One pool of a plan: `count` instances of `node_type` (device kind `device`) in `role`."""

    name: str
    node_type: str
    role: Role
    device: Device
    count: int


@dataclass(frozen=True)
class SolvedPlan:
    """A solver answer. `document` is the JSON-able plan published to Redis (placement's
    `Plan.to_dict()`); `status` is "optimal" or "feasible"; costs in dollars per hour."""

    pools: tuple[PoolPlan, ...]
    cost_per_hour: float
    baselines: Mapping[str, float]
    status: str
    document: Mapping[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {p.name: p.count for p in self.pools}


# (demand, running plan or None) -> new plan. Pure; may raise InfeasibleError / ConfigError.
SolveFn = Callable[[Sequence[DemandClass], SolvedPlan | None], SolvedPlan]
