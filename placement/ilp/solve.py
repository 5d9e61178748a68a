"""The placement ILP as a pure function: `solve(Problem, SolverOptions) -> Solution`.

Minimise Σ price·count (+ churn_penalty · Σ |count − running|) subject to `constraints.py`. No printing,
no mutation of the problem. An infeasible problem raises `InfeasibleError` with the explanation of
`placement.explain` (per-class pre-check first, then an elastic re-solve).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pulp

from heteroserve.errors import InfeasibleError
from placement.ilp import constraints
from placement.ilp.problem import Problem, SolverOptions
from placement.ilp.solver import SolveInfo, run
from placement.ilp.variables import Variables, make_variables

SHARE_EPSILON = 1e-6


@dataclass(frozen=True)
class Solution:
    """Counts per pool index, shares per option index (only non-zero ones), cost in $/h."""

    counts: tuple[int, ...]
    colocated_shares: Mapping[int, float]
    disaggregated_shares: Mapping[int, float]
    cost_per_hour: float
    info: SolveInfo
    unserved: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("colocated_shares", "disaggregated_shares", "unserved"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


def build_model(problem: Problem, options: SolverOptions, *, elastic: bool = False
                ) -> tuple[pulp.LpProblem, Variables]:
    """The pulp model of `problem` (elastic: unserved demand allowed at a large price)."""
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    v = make_variables(problem, elastic=elastic)
    cost = pulp.lpSum(pool.price_per_hour * v.count[p] for p, pool in enumerate(problem.pools))
    churn = problem.churn_penalty * pulp.lpSum(v.change) if v.change else 0
    big = 1e3 * (1 + sum(p.price_per_hour for p in problem.pools))
    unserved = big * pulp.lpSum(d.rate * u for d, u in zip(problem.demands, v.unserved, strict=True)) \
        if v.unserved else 0
    model += cost + churn + unserved
    constraints.add_served(model, problem, v)
    constraints.add_capacity(model, problem, v)
    constraints.add_inventory(model, problem, v)
    constraints.add_transfer(model, problem, v, options)
    if v.change:
        constraints.add_churn(model, problem, v)
    return model, v


def extract(problem: Problem, v: Variables, info: SolveInfo) -> Solution:
    counts = tuple(int(round(x.value() or 0)) for x in v.count)
    coloc = {k: float(x.value()) for k, x in enumerate(v.coloc) if (x.value() or 0) > SHARE_EPSILON}
    disagg = {k: float(x.value()) for k, x in enumerate(v.disagg) if (x.value() or 0) > SHARE_EPSILON}
    unserved = {c: float(x.value()) for c, x in enumerate(v.unserved) if (x.value() or 0) > SHARE_EPSILON}
    cost = sum(n * p.price_per_hour for n, p in zip(counts, problem.pools, strict=True))
    return Solution(counts, coloc, disagg, round(cost, 6), info, unserved)


def solve(problem: Problem, options: SolverOptions | None = None) -> Solution:
    """Cheapest counts and routing shares meeting every constraint; raises InfeasibleError."""
    from placement.explain import explain_infeasible, precheck

    options = options or SolverOptions()
    precheck(problem)
    model, v = build_model(problem, options)
    info = run(model, options)
    if info.has_solution:
        return extract(problem, v, info)
    if info.status == "infeasible":
        raise explain_infeasible(problem, options)
    raise InfeasibleError(f"solver {info.solver} found no plan within {options.time_limit_seconds} s "
                          f"(status {info.status}); raise the time limit", constraint="time_limit")
