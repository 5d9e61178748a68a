"""Per-model bounds and a joint start for an ILP whose models share one fleet inventory.

Only inventory rows couple models (every pool belongs to one model). P_m, model m's ILP alone with the
whole inventory (`split.restrict`), is therefore a relaxation of m's part of the joint ILP: any joint
plan cut down to m's pools is a plan of P_m. So

    Σ_{p of m} price_p · n_p  (+ churn_penalty · Σ_{p of m} d_p)  ≥  LB_m                (row model_bound_m)

holds for every joint plan, where LB_m is HiGHS's proven dual bound of P_m (not its incumbent, so the
row stays valid when P_m stops at its gap or time limit). With these rows the joint LP relaxation is at
least Σ_m LB_m: the integrality of each model's worker counts, which the joint LP relaxation spreads
over many fractional pools, is priced in before branching (see placement/README.md, "Shared inventory").

The start: the per-model plans put together. Where they overfill a node type, the models that fit the
inventory (in descending LB_m) keep their plans and the rest are re-solved, one after the other, on
what the others left. The result is a joint plan that HiGHS checks and starts from; the gap the caller
reports is HiGHS's own (its incumbent against its dual bound on the joint ILP with the rows above).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from placement.ilp.problem import Problem, SolverOptions
from placement.ilp.result import SolveInfo
from placement.ilp.split import restrict

# Share of the time limit for the per-model solves (bounds and plans), then for the re-solves that fit
# the plans into the inventory; the joint solve gets the rest.
BOUND_SHARE = 0.5
REPAIR_SHARE = 0.2


@dataclass(frozen=True)
class PartResult:
    """A solved ILP's info and raw variable values: counts per pool, shares per option (unfiltered, so
    a start built from them is exactly as feasible as the solver left them)."""

    info: SolveInfo
    counts: tuple[float, ...]
    coloc: tuple[float, ...]
    disagg: tuple[float, ...]


SolvePart = Callable[[Problem, SolverOptions], PartResult]


@dataclass(frozen=True)
class Decomposition:
    """`bounds`: model → LB_m ($/h), only models whose solve proved a bound. `start`: values for the
    whole problem (indices as in it), or None when no jointly feasible plan was assembled."""

    bounds: dict[str, float]
    start: PartResult | None
    seconds: float


def applies(problem: Problem, options: SolverOptions) -> bool:
    """Several models sharing inventory, at least `decompose_min_classes` classes, solved by HiGHS."""
    if options.solver != "highs" or options.decompose_min_classes is None:
        return False
    models = {d.model for d in problem.demands}
    return len(models) > 1 and len(problem.demands) >= options.decompose_min_classes


def decompose(problem: Problem, options: SolverOptions, solve_part: SolvePart) -> Decomposition:
    """Per-model bounds (one part per core at a time, each to half the gap) and a joint start; see the
    module doc. Time: `BOUND_SHARE` of the limit for the parts, `REPAIR_SHARE` for the re-solves."""
    started = time.perf_counter()
    models = sorted({d.model for d in problem.demands})
    parts = {m: restrict(problem, {m}) for m in models}
    workers = max(1, min(len(models), os.cpu_count() or 1))  # HiGHS runs one thread per solve
    limit = options.time_limit_seconds
    per_part = limit * BOUND_SHARE * workers / len(models) if limit else None
    part_options = replace(options, mip_gap=options.mip_gap / 2, time_limit_seconds=per_part)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda m: solve_part(parts[m], part_options), models)
        solved = dict(zip(models, results, strict=True))
    if any(r.info.status in ("infeasible", "unbounded") for r in solved.values()):
        return Decomposition({}, None, time.perf_counter() - started)  # the joint solve will say why
    bounds = {m: r.info.bound for m, r in solved.items() if r.info.bound is not None}
    repair = replace(part_options, time_limit_seconds=limit * REPAIR_SHARE if limit else None)
    start = _fit(problem, parts, solved, bounds, repair, solve_part)
    return Decomposition(bounds, start, time.perf_counter() - started)


def _fit(
    problem: Problem,
    parts: dict[str, Problem],
    solved: dict[str, PartResult],
    bounds: dict[str, float],
    options: SolverOptions,
    solve_part: SolvePart,
) -> PartResult | None:
    """The per-model plans as one joint plan within the inventory, re-solving the models that overfill it."""
    if any(not r.info.has_solution for r in solved.values()):
        return None
    residual = dict(problem.inventory)
    order = sorted(parts, key=lambda m: -bounds.get(m, 0.0))
    redo = [m for m in order if not _take(residual, parts[m], solved[m])]
    plans = dict(solved)
    budget = options.time_limit_seconds
    for i, m in enumerate(redo):
        deadline = budget / (len(redo) - i) if budget else None
        began = time.perf_counter()
        narrowed = replace(parts[m], inventory=dict(residual))
        again = solve_part(narrowed, replace(options, time_limit_seconds=deadline))
        if not again.info.has_solution or not _take(residual, parts[m], again):
            return None
        plans[m] = again
        budget = budget - (time.perf_counter() - began) if budget else None
        if budget is not None and budget <= 0 and i + 1 < len(redo):
            return None
    return _assemble(problem, parts, plans)


def _take(residual: dict[str, int], part: Problem, result: PartResult) -> bool:
    """Subtract `result`'s nodes from `residual` if they fit (True); leave it unchanged if not."""
    use: Counter[str] = Counter()
    for pool, n in zip(part.pools, result.counts, strict=True):
        use[pool.node_type] += round(n)
    if any(n > residual[t] for t, n in use.items() if t in residual):
        return False
    for t, n in use.items():
        if t in residual:
            residual[t] -= n
    return True


def _assemble(problem: Problem, parts: dict[str, Problem], plans: dict[str, PartResult]) -> PartResult:
    """Map each part's values back to `problem`'s indices (restrict keeps the order within a model)."""
    counts = [0.0] * len(problem.pools)
    coloc = [0.0] * len(problem.colocated)
    disagg = [0.0] * len(problem.disaggregated)
    for m, plan in plans.items():
        pools = [i for i, p in enumerate(problem.pools) if p.model == m]
        cs = [k for k, o in enumerate(problem.colocated) if problem.demands[o.demand].model == m]
        ds = [k for k, o in enumerate(problem.disaggregated) if problem.demands[o.demand].model == m]
        for target, index, values in ((counts, pools, plan.counts), (coloc, cs, plan.coloc),
                                      (disagg, ds, plan.disagg)):
            assert len(index) == len(values), f"part {m}: index maps do not match"
            for i, value in zip(index, values, strict=True):
                target[i] = value
    objective = sum(round(n) * p.price_per_hour for n, p in zip(counts, problem.pools, strict=True))
    info = SolveInfo("highs", "feasible", False, None, 0.0, objective)
    return PartResult(info, tuple(float(round(n)) for n in counts), tuple(coloc), tuple(disagg))
