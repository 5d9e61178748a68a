"""Exact decomposition of the ILP by model: models that share no inventory-limited node type are
independent problems (every pool belongs to one model, so only an inventory row couples two models).

`split_by_model` cuts a `Problem` into such groups; `merge` joins their Solutions back into one.
"""

from __future__ import annotations

from placement.ilp.problem import ColocatedOption, DisaggregatedOption, Problem
from placement.ilp.result import Solution, SolveInfo


def split_by_model(problem: Problem) -> list[Problem]:
    """Independent sub-problems, one per group of models that share an inventory-limited node type.

    Pools belong to one model, so without a shared inventory row the ILP separates exactly by model.
    """
    models = sorted({d.model for d in problem.demands} | {p.model for p in problem.pools})
    parent = {m: m for m in models}

    def find(m: str) -> str:
        while parent[m] != m:
            m = parent[m]
        return m

    for node_type in problem.inventory:
        users = sorted({p.model for p in problem.pools if p.node_type == node_type})
        for other in users[1:]:
            parent[find(other)] = find(users[0])
    groups: dict[str, set[str]] = {}
    for m in models:
        groups.setdefault(find(m), set()).add(m)
    if len(groups) == 1:
        return [problem]
    return [restrict(problem, group) for group in groups.values()]


def restrict(problem: Problem, models: set[str]) -> Problem:
    """The part of `problem` that serves `models`: their classes, pools and options, in the same order;
    the whole inventory (the other models' claims on it are dropped)."""
    demands = [i for i, d in enumerate(problem.demands) if d.model in models]
    pools = [i for i, p in enumerate(problem.pools) if p.model in models]
    dmap = {old: new for new, old in enumerate(demands)}
    pmap = {old: new for new, old in enumerate(pools)}
    coloc = tuple(
        ColocatedOption(dmap[o.demand], pmap[o.pool], o.load) for o in problem.colocated if o.demand in dmap
    )
    disagg = tuple(
        DisaggregatedOption(
            dmap[o.demand],
            pmap[o.prefill_pool],
            pmap[o.decode_pool],
            o.prefill_load,
            o.decode_load,
            o.transfer_seconds,
        )
        for o in problem.disaggregated
        if o.demand in dmap
    )
    names = {problem.pools[i].name for i in pools}
    return Problem(
        tuple(problem.demands[i] for i in demands),
        tuple(problem.pools[i] for i in pools),
        coloc,
        disagg,
        problem.inventory,
        {k: v for k, v in problem.current.items() if k in names},
        problem.churn_penalty,
        {problem.demands[i].name: problem.exclusions.get(problem.demands[i].name, ()) for i in demands},
    )


def merge(problem: Problem, parts: list[Problem], solutions: list[Solution]) -> Solution:
    """One Solution of `problem` from the Solutions of its `parts` (as split by `split_by_model`):
    counts and shares mapped back by name, gaps combined cost-weighted, optimal only if every part is."""
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
    bounds = [i.bound for i in infos]
    bound = None if any(b is None for b in bounds) else sum(b or 0.0 for b in bounds)
    info = SolveInfo(
        infos[0].solver,
        status,
        status == "optimal",
        gap,
        sum(i.solve_seconds for i in infos),
        objective,
        bound,
    )
    cost = sum(n * p.price_per_hour for n, p in zip(counts, problem.pools, strict=True))
    return Solution(tuple(counts), coloc, disagg, round(cost, 6), info)
