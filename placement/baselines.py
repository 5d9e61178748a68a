"""Baselines reported next to every plan, each on the same Problem (same profiles, same fleet):

- `cheapest_single_type`: every class colocated on one node type; per model ⌈Σ rate·load⌉ instances;
  the cheapest node type that can serve every class within its inventory.
- `colocated_only`: our ILP without P/D routes (what Mélange / AIBrix size).
- `melange`: Mélange's own formulation (slices of each class, binary assignment) on the colocated
  options, solved by the same solver stack.
A baseline with no feasible solution has cost None and says why in `status`.
"""

from __future__ import annotations

import math
from collections import defaultdict

from common.errors import InfeasibleError
from placement.ilp.problem import MIN_RATE, Problem, SolverOptions
from placement.melange import solve_slices
from placement.plan import Baseline
from placement.solve import solve

EPS = 1e-9


def cheapest_single_type(problem: Problem) -> Baseline:
    best: Baseline | None = None
    live = {c for c, d in enumerate(problem.demands) if d.rate > MIN_RATE}
    for node_type in sorted({p.node_type for p in problem.pools}):
        load: dict[str, float] = defaultdict(float)
        covered: set[int] = set()
        for o in problem.colocated:
            pool = problem.pools[o.pool]
            if pool.node_type == node_type and o.demand not in covered:
                covered.add(o.demand)
                load[pool.model] += problem.demands[o.demand].rate * o.load
        if covered != live:
            continue
        count = sum(math.ceil(x - EPS) for x in load.values())
        if count > problem.inventory.get(node_type, count):
            continue
        price = next(p.price_per_hour for p in problem.pools if p.node_type == node_type)
        candidate = Baseline(f"single:{node_type}", round(count * price, 6), {node_type: count})
        if best is None or (candidate.cost_per_hour or 0) < (best.cost_per_hour or 0):
            best = candidate
    return best or Baseline("single", None, {}, "infeasible: no single node type serves every class")


def colocated_only(problem: Problem, options: SolverOptions) -> Baseline:
    try:
        s = solve(problem.without_disaggregation(), options)
    except InfeasibleError as exc:
        return Baseline("colocated_only", None, {}, f"infeasible: {exc}")
    counts: dict[str, int] = defaultdict(int)
    for n, pool in zip(s.counts, problem.pools, strict=True):
        if n:
            counts[pool.node_type] += n
    return Baseline("colocated_only", s.cost_per_hour, counts, s.info.status)


def melange(problem: Problem, slice_factor: int, options: SolverOptions) -> Baseline:
    try:
        r = solve_slices(problem.without_disaggregation(), slice_factor, options)
    except InfeasibleError as exc:
        return Baseline("melange", None, {}, f"infeasible: {exc}")
    return Baseline("melange", r.cost_per_hour, r.instances, r.info.status)
