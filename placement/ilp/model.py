"""The placement ILP, top to bottom: variables, objective, constraints (in DESIGN.md's order), solve.

Indices: c a request class (`problem.demands`), p a pool (model × node type × role), t a node type,
k an option: a colocated (class, pool) pair or a P/D route (class, prefill pool, decode pool).

    minimise    Σ_p price_p · n_p  +  churn_penalty · Σ_p d_p                              ($/h)
    subject to  served_c, capacity_p, inventory_t, egress_p, ingress_p, churn_hi_p, churn_lo_p,
                replicas_p, uses_k   (9. availability: a used pool runs ≥ min(min_replicas, inventory))

Memory fit, TTFT including the KV transfer, and the CSD rule are not rows: `placement.compile` creates
an option only if it meets them, so a breaking option has no variable (its reason is kept in
`Problem.exclusions` for explanations, and `placement.check` re-verifies all three on the plan).
Pure: a fresh pulp model per call, nothing printed, the `Problem` never mutated. `optimize` returns a
`Solution`, or an `Unsolved` that `placement.explain` turns into an explanation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pulp

from placement.ilp import decompose, terms
from placement.ilp.backend import run
from placement.ilp.problem import MIN_RATE, Problem, SolverOptions
from placement.ilp.result import Solution, SolveInfo, Unsolved
from placement.ilp.split import merge, split_by_model

SHARE_EPSILON = 1e-6  # shares below this are solver dust, not routes


@dataclass(frozen=True)
class Variables:
    count: tuple[pulp.LpVariable, ...]  # n_p integer in [0, inventory of p's node type]: instances
    coloc: tuple[pulp.LpVariable, ...]  # x_k in [0, 1]: share of option k's class on its pool
    disagg: tuple[pulp.LpVariable, ...]  # z_k in [0, 1]: share of route k's class, prefill → decode
    change: tuple[pulp.LpVariable, ...]  # d_p ≥ 0: |n_p − running_p|, only with a churn penalty
    unserved: tuple[pulp.LpVariable, ...]  # u_c in [0, 1]: only in the elastic re-solve (explain)
    used: tuple[pulp.LpVariable, ...]  # y_p binary: pool p carries traffic; only with min_replicas > 1


def build_model(
    problem: Problem, options: SolverOptions, *, elastic: bool = False
) -> tuple[pulp.LpProblem, Variables]:
    """The pulp model of `problem`; `elastic` lets classes go unserved at a prohibitive price."""
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    pools, demands, add, bound = problem.pools, problem.demands, model.add_variable, problem.inventory.get

    # Variables, named by index (n_3, x_12, z_40) so any class or pool name is safe.
    v = Variables(
        count=tuple(add(f"n_{p}", 0, bound(pool.node_type), cat="Integer") for p, pool in enumerate(pools)),
        coloc=tuple(add(f"x_{k}", 0, 1) for k in range(len(problem.colocated))),
        disagg=tuple(add(f"z_{k}", 0, 1) for k in range(len(problem.disaggregated))),
        change=tuple(add(f"d_{p}", 0) for p in range(len(pools))) if problem.churn_penalty > 0 else (),
        unserved=tuple(add(f"u_{c}", 0, 1) for c in range(len(demands))) if elastic else (),
        used=tuple(add(f"y_{p}", 0, 1, cat="Binary") for p in range(len(pools)))
        if options.min_replicas > 1 else (),
    )

    # Objective: cost per hour + churn penalty (+ in the elastic model, unserved req/s far above any plan).
    cost = pulp.lpSum(pool.price_per_hour * v.count[p] for p, pool in enumerate(pools))
    churn = problem.churn_penalty * pulp.lpSum(v.change) if v.change else 0
    big = 1e3 * (1 + sum(pool.price_per_hour for pool in pools))
    unserved_rates = (d.rate * u for d, u in zip(demands, v.unserved, strict=True))
    unserved = big * pulp.lpSum(unserved_rates) if v.unserved else 0
    model += cost + churn + unserved

    # 1. Every class served: Σ colocated shares + Σ P/D route shares (+ unserved) = 1.
    shares = terms.shares_by_class(problem, v.coloc, v.disagg)
    for c, demand in enumerate(demands):
        if demand.rate > MIN_RATE:
            model += pulp.lpSum(shares[c] + ([v.unserved[c]] if v.unserved else [])) == 1, f"served_{c}"

    # 2. P/D shares covered: a route's z_k carries its prefill and its decode half together, so row 1
    #    covers both halves of the disaggregated part, and row 3 charges each half to its own pool.

    # 3. Capacity per pool: Σ rate · share · load over the options using pool p ≤ n_p.
    load = terms.load_by_pool(problem, v.coloc, v.disagg)
    for p in range(len(pools)):
        model += pulp.lpSum(load[p]) <= v.count[p], f"capacity_{p}"

    # 4. Inventory: Σ n_p over the pools of node type t ≤ its nodes (when the fleet limits it).
    for t, (node_type, counts) in enumerate(terms.counts_by_node_type(problem, v.count)):
        if node_type in problem.inventory:
            model += pulp.lpSum(counts) <= problem.inventory[node_type], f"inventory_{t}"

    # 5. Memory fit (weights + one request's KV): by option generation, see the docstring.

    # 6. KV-transfer bandwidth: KV bytes/s leaving a prefill pool / entering a decode pool
    #    ≤ n_p · NIC bytes/s · transfer_utilization; in GB/s so the coefficients stay near 1.
    egress, ingress = terms.kv_flows(problem, v.disagg)
    for kind, flows in (("egress", egress), ("ingress", ingress)):
        for p, flow in flows.items():
            bandwidth = pools[p].network_bytes_per_second * options.transfer_utilization
            if bandwidth != float("inf"):
                model += pulp.lpSum(flow) * 1e-9 <= v.count[p] * bandwidth * 1e-9, f"{kind}_{p}"

    # 7. TTFT including the KV transfer time: by option generation.
    # 8. CSD only decodes, and only long-context or latency-tolerant classes: by option generation.

    # 9. Availability: a pool that carries any share (x_k, z_k ≤ y_p) runs ≥ min_replicas instances
    #    (capped by its node type's inventory), so one worker's death leaves a peer to retry on.
    for k, o in enumerate(problem.colocated if v.used else ()):
        model += v.coloc[k] <= v.used[o.pool], f"uses_{k}"
    for k, d in enumerate(problem.disaggregated if v.used else ()):
        model += v.disagg[k] <= v.used[d.prefill_pool], f"uses_prefill_{k}"
        model += v.disagg[k] <= v.used[d.decode_pool], f"uses_decode_{k}"
    for p, pool in enumerate(pools if v.used else ()):
        floor = min(options.min_replicas, bound(pool.node_type, options.min_replicas))
        model += v.count[p] >= floor * v.used[p], f"replicas_{p}"

    # Churn, linearised: d_p ≥ |n_p − running_p|.
    for p, pool in enumerate(pools if v.change else ()):
        running = problem.current.get(pool.name, 0)
        model += v.change[p] >= v.count[p] - running, f"churn_hi_{p}"
        model += v.change[p] >= running - v.count[p], f"churn_lo_{p}"
    return model, v


def read_solution(problem: Problem, v: Variables, info: SolveInfo) -> Solution:
    """The solved values: counts rounded to integers, shares above SHARE_EPSILON, cost from the counts."""

    def nonzero(xs: tuple[pulp.LpVariable, ...]) -> dict[int, float]:
        return {i: float(x.value()) for i, x in enumerate(xs) if (x.value() or 0) > SHARE_EPSILON}

    counts = tuple(round(x.value() or 0) for x in v.count)
    cost = sum(n * pool.price_per_hour for n, pool in zip(counts, problem.pools, strict=True))
    return Solution(counts, nonzero(v.coloc), nonzero(v.disagg), round(cost, 6), info, nonzero(v.unserved))


def optimize(problem: Problem, options: SolverOptions | None = None) -> Solution | Unsolved:
    """Cheapest counts and routing shares meeting every constraint, or the first part without a plan.

    Models that share no inventory-limited node type are solved as separate ILPs (exact: the ILP
    separates), each with an equal part of the time limit; their gaps combine cost-weighted.
    """
    options = options or SolverOptions()
    parts = split_by_model(problem)
    if len(parts) == 1:
        return _optimize_one(problem, options)
    limit = options.time_limit_seconds
    part_options = replace(options, time_limit_seconds=limit / len(parts) if limit else None)
    solutions = []
    for part in parts:
        result = _optimize_one(part, part_options)
        if isinstance(result, Unsolved):
            return result
        solutions.append(result)
    return merge(problem, parts, solutions)


def _optimize_one(problem: Problem, options: SolverOptions) -> Solution | Unsolved:
    """One joint ILP. Models sharing inventory (large instances): per-model bound rows and a start
    first (`decompose`); the time limit covers both stages and `solve_seconds` reports both."""
    started = time.perf_counter()
    parts = None
    if decompose.applies(problem, options):
        parts = decompose.decompose(problem, options, _solve_part)
    model, v = build_model(problem, options)
    if parts is not None:
        _add_model_bounds(model, problem, v, parts.bounds)
        if parts.start is not None:
            _set_start(problem, options, v, parts.start)
        limit = options.time_limit_seconds
        left = max(1.0, limit - (time.perf_counter() - started)) if limit else None
        options_left = replace(options, time_limit_seconds=left)
        info = run(model, options_left, start=parts.start is not None)
        info = replace(info, solve_seconds=time.perf_counter() - started)
        if not info.has_solution:
            return Unsolved(problem, options, info)
        return read_solution(problem, v, info)
    info = run(model, options)
    return read_solution(problem, v, info) if info.has_solution else Unsolved(problem, options, info)


def _solve_part(problem: Problem, options: SolverOptions) -> decompose.PartResult:
    """One model's ILP (the parts run side by side in Python threads), with raw values for a start."""
    model, v = build_model(problem, options)
    info = run(model, options)

    def values(xs: tuple[pulp.LpVariable, ...]) -> tuple[float, ...]:
        return tuple(float(x.value() or 0.0) for x in xs)

    return decompose.PartResult(info, values(v.count), values(v.coloc), values(v.disagg))


def _add_model_bounds(
    model: pulp.LpProblem, problem: Problem, v: Variables, bounds: dict[str, float]
) -> None:
    """Rows model_bound_m (see `decompose`): model m's cost (+ churn) ≥ its proven bound alone."""
    for i, (m, bound) in enumerate(sorted(bounds.items())):
        mine = [p for p, pool in enumerate(problem.pools) if pool.model == m]
        cost = pulp.lpSum(problem.pools[p].price_per_hour * v.count[p] for p in mine)
        churn = problem.churn_penalty * pulp.lpSum(v.change[p] for p in mine) if v.change else 0
        model += cost + churn >= bound, f"model_bound_{i}"


def _set_start(problem: Problem, options: SolverOptions, v: Variables, start: decompose.PartResult) -> None:
    """Every variable's value from a joint plan: counts, shares, and the churn and use rows they imply."""
    for xs, values in ((v.count, start.counts), (v.coloc, start.coloc), (v.disagg, start.disagg)):
        for x, value in zip(xs, values, strict=True):
            # solver values sit within its tolerances of the bounds (-1e-14); pulp checks them exactly
            high = x.upBound if x.upBound is not None else value
            x.setInitialValue(min(max(value, x.lowBound), high))
    for p, pool in enumerate(problem.pools if v.change else ()):
        v.change[p].setInitialValue(abs(start.counts[p] - problem.current.get(pool.name, 0)))
    for p, pool in enumerate(problem.pools if v.used else ()):
        floor = min(options.min_replicas, problem.inventory.get(pool.node_type, options.min_replicas))
        v.used[p].setInitialValue(1.0 if start.counts[p] >= max(1, floor) else 0.0)
