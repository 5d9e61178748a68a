"""The placement ILP as a pure function: `solve(Problem, SolverOptions) -> Solution`.

Minimise Σ price·count (+ churn_penalty · Σ |count − running|) subject to `constraints.py`. No printing,
no mutation of the problem. An infeasible problem raises `InfeasibleError` with the explanation of
`placement.explain` (per-class pre-check first, then an elastic re-solve).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import pulp

from common.errors import InfeasibleError
from placement.ilp import constraints
from placement.ilp.problem import Problem, SolverOptions, split_by_model
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


def build_model(
    problem: Problem, options: SolverOptions, *, elastic: bool = False
) -> tuple[pulp.LpProblem, Variables]:
    """The pulp model of `problem` (elastic: unserved demand allowed at a large price)."""
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    v = make_variables(model, problem, elastic=elastic)
    cost = pulp.lpSum(pool.price_per_hour * v.count[p] for p, pool in enumerate(problem.pools))
    churn = problem.churn_penalty * pulp.lpSum(v.change) if v.change else 0
    big = 1e3 * (1 + sum(p.price_per_hour for p in problem.pools))
    unserved = (
        big * pulp.lpSum(d.rate * u for d, u in zip(problem.demands, v.unserved, strict=True))
        if v.unserved
        else 0
    )
    model += cost + churn + unserved
    constraints.add_served(model, problem, v)
    constraints.add_capacity(model, problem, v)
    constraints.add_inventory(model, problem, v)
    constraints.add_transfer(model, problem, v, options)
    if v.change:
        constraints.add_churn(model, problem, v)
    return model, v


def extract(problem: Problem, v: Variables, info: SolveInfo) -> Solution:
    counts = tuple(round(x.value() or 0) for x in v.count)
    coloc = {k: float(x.value()) for k, x in enumerate(v.coloc) if (x.value() or 0) > SHARE_EPSILON}
    disagg = {k: float(x.value()) for k, x in enumerate(v.disagg) if (x.value() or 0) > SHARE_EPSILON}
    unserved = {c: float(x.value()) for c, x in enumerate(v.unserved) if (x.value() or 0) > SHARE_EPSILON}
    cost = sum(n * p.price_per_hour for n, p in zip(counts, problem.pools, strict=True))
    return Solution(counts, coloc, disagg, round(cost, 6), info, unserved)


def solve(problem: Problem, options: SolverOptions | None = None) -> Solution:
    """Cheapest counts and routing shares meeting every constraint; raises InfeasibleError.

    Models that share no inventory-limited node type are solved as separate ILPs (exact: the ILP
    separates), each with an equal part of the time limit; their gaps combine cost-weighted.
    """
    from placement.explain import precheck

    options = options or SolverOptions()
    precheck(problem)
    parts = split_by_model(problem)
    if len(parts) == 1:
        return _solve_one(problem, options)
    limit = options.time_limit_seconds
    sub_options = replace(options, time_limit_seconds=limit / len(parts) if limit else None)
    return _merge(problem, parts, [_solve_one(p, sub_options) for p in parts])


def _merge(problem: Problem, parts: list[Problem], solutions: list[Solution]) -> Solution:
    pool_of = problem.pool_index()
    counts = [0] * len(problem.pools)
    coloc: dict[int, float] = {}
    disagg: dict[int, float] = {}
    coloc_index = {
        (problem.demands[o.demand].name, problem.pools[o.pool].name): k
        for k, o in enumerate(problem.colocated)
    }
    disagg_index = {
        (
            problem.demands[o.demand].name,
            problem.pools[o.prefill_pool].name,
            problem.pools[o.decode_pool].name,
        ): k
        for k, o in enumerate(problem.disaggregated)
    }
    for part, sol in zip(parts, solutions, strict=True):
        for i, n in enumerate(sol.counts):
            counts[pool_of[part.pools[i].name]] = n
        for k, share in sol.colocated_shares.items():
            o = part.colocated[k]
            coloc[coloc_index[(part.demands[o.demand].name, part.pools[o.pool].name)]] = share
        for k, share in sol.disaggregated_shares.items():
            d = part.disaggregated[k]
            disagg[
                disagg_index[
                    (
                        part.demands[d.demand].name,
                        part.pools[d.prefill_pool].name,
                        part.pools[d.decode_pool].name,
                    )
                ]
            ] = share
    infos = [s.info for s in solutions]
    objective = sum(i.objective or 0.0 for i in infos)
    gaps = [i.gap for i in infos]
    gap = (
        None
        if any(g is None for g in gaps)
        else sum((i.objective or 0.0) * (i.gap or 0.0) for i in infos) / objective
        if objective
        else 0.0
    )
    status = "optimal" if all(i.optimal for i in infos) else "feasible"
    info = SolveInfo(
        infos[0].solver, status, status == "optimal", gap, sum(i.solve_seconds for i in infos), objective
    )
    cost = sum(n * p.price_per_hour for n, p in zip(counts, problem.pools, strict=True))
    return Solution(tuple(counts), coloc, disagg, round(cost, 6), info)


def _solve_one(problem: Problem, options: SolverOptions) -> Solution:
    from placement.explain import explain_infeasible

    model, v = build_model(problem, options)
    info = run(model, options)
    if info.has_solution:
        return extract(problem, v, info)
    if info.status == "infeasible":
        raise explain_infeasible(problem, options)
    raise InfeasibleError(
        f"solver {info.solver} found no plan within {options.time_limit_seconds} s "
        f"(status {info.status}); raise the time limit",
        constraint="time_limit",
    )
