"""The planner's vocabulary: demand in, a solved plan out, and the solver's call signature.

A solved plan is placement's `Plan` (the one plan document: `Plan.to_dict()` is what the planner
publishes and every reader parses) plus the pool list the actuators need (`PoolPlan`: the device
kind of each pool, which the plan states as `Pool.device`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.vocab import Device, Role, parse_device, parse_role
from placement.plan import Plan


@dataclass(frozen=True)
class DemandClass:
    """Traffic of one request class to plan for. `name` is placement's `model/slo/i<i>o<j>`; rate in
    requests/s; mean lengths in tokens; histograms over `common.vocab.LENGTH_BUCKET_EDGES` (may be
    empty)."""

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
    model: str = ""


@dataclass(frozen=True)
class SolvedPlan:
    """A solver answer: the placement `Plan` and its pools as the actuators see them."""

    plan: Plan

    @property
    def pools(self) -> tuple[PoolPlan, ...]:
        return tuple(PoolPlan(p.name, p.node_type, parse_role(p.role, "pools[].role"),
                              parse_device(p.device or "cpu", "pools[].device"), p.count, p.model)
                     for p in self.plan.pools)

    @property
    def cost_per_hour(self) -> float:
        return self.plan.cost_per_hour

    @property
    def status(self) -> str:
        return self.plan.solve.status

    @property
    def baselines(self) -> dict[str, float]:
        """Baseline name → $/h, for the feasible baselines."""
        return {b.name: b.cost_per_hour for b in self.plan.baselines if b.cost_per_hour is not None}

    @property
    def document(self) -> Mapping[str, Any]:
        return self.plan.to_dict()

    def counts(self) -> dict[str, int]:
        return self.plan.counts()

    def routing(self) -> dict[str, dict[str, float]]:
        """class → pool → share (a P/D route's share on its prefill and on its decode pool)."""
        out: dict[str, dict[str, float]] = {}
        for c in self.plan.classes:
            shares = out.setdefault(c.name, {})
            for r in c.routes:
                for pool in r.pools:
                    shares[pool] = shares.get(pool, 0.0) + r.share
        return out


def parse_document(document: Mapping[str, Any]) -> SolvedPlan:
    """A `SolvedPlan` from a published plan (a planner adopting the plan after a takeover)."""
    return SolvedPlan(Plan.from_dict(document))


# (demand, running plan or None) -> new plan. Pure; may raise InfeasibleError / ConfigError.
SolveFn = Callable[[Sequence[DemandClass], SolvedPlan | None], SolvedPlan]
