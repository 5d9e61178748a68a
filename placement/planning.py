"""`make_plan`: solve a Problem and package the answer as a `Plan` with its baselines. Pure."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from placement import baselines as base
from placement.ilp.problem import Problem, SolverOptions
from placement.ilp.result import Solution
from placement.plan import Baseline, Classifier, ClassRouting, Plan, Pool, Route, SolveSummary
from placement.solve import solve

_BUCKET = re.compile(r"/i(\d+)o(\d+)$")


def _bucket(name: str) -> tuple[int, int]:
    m = _BUCKET.search(name)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def to_plan(
    problem: Problem,
    solution: Solution,
    classifier: Classifier,
    baselines: Sequence[Baseline] = (),
    version: int = 0,
) -> Plan:
    """Package a Solution: pools with count > 0, each class's routes with shares renormalised to 1."""
    pools = tuple(
        Pool(p.name, p.model, p.node_type, p.role, n, p.price_per_hour)
        for p, n in zip(problem.pools, solution.counts, strict=True)
        if n > 0
    )
    routes: dict[int, list[Route]] = defaultdict(list)
    for k, share in solution.colocated_shares.items():
        o = problem.colocated[k]
        routes[o.demand].append(Route(share, pool=problem.pools[o.pool].name))
    for k, share in solution.disaggregated_shares.items():
        d = problem.disaggregated[k]
        routes[d.demand].append(
            Route(
                share,
                prefill_pool=problem.pools[d.prefill_pool].name,
                decode_pool=problem.pools[d.decode_pool].name,
            )
        )
    open_pools = {p.name for p in pools}
    classes = []
    for c, demand in enumerate(problem.demands):
        # solver tolerances can leave dust shares on closed pools; drop them and renormalise
        routes[c] = [r for r in routes[c] if all(name in open_pools for name in r.pools)]
        total = sum(r.share for r in routes[c]) or 1.0
        rs = tuple(Route(min(r.share / total, 1.0), r.pool, r.prefill_pool, r.decode_pool) for r in routes[c])
        classes.append(
            ClassRouting(demand.name, demand.model, demand.slo, _bucket(demand.name), demand.rate, rs)
        )
    info = solution.info
    return Plan(
        pools,
        tuple(classes),
        classifier,
        solution.cost_per_hour,
        tuple(baselines),
        SolveSummary(info.solver, info.status, info.optimal, info.gap, round(info.solve_seconds, 4)),
        version,
    )


def make_plan(
    problem: Problem,
    classifier: Classifier,
    options: SolverOptions | None = None,
    *,
    with_baselines: bool = True,
    slice_factor: int = 1,
    version: int = 0,
) -> Plan:
    """Cheapest plan for `problem` plus the baselines (single type, colocated-only, Mélange)."""
    options = options or SolverOptions()
    solution = solve(problem, options)
    found: list[Baseline] = []
    if with_baselines:
        found = [
            base.cheapest_single_type(problem),
            base.colocated_only(problem, options),
            base.melange(problem, slice_factor, options),
        ]
    return to_plan(problem, solution, classifier, found, version)
