"""Constraints of the placement ILP, each named (`<kind>_<index>`) so the explainer can report them.

- `served_c`:    Σ colocated shares + Σ P/D route shares (+ unserved in the elastic model) = 1;
                 a P/D route carries its prefill and its decode half together, so the prefill and the
                 decode shares of the disaggregated part are each exactly covered;
- `capacity_p`:  Σ rate·share·load over the options using pool p ≤ count[p];
- `inventory_t`: Σ count over the pools of node type t ≤ nodes of t (when an inventory is given);
- `egress_p` / `ingress_p`: KV bytes/s leaving a prefill pool / entering a decode pool ≤
                 count · NIC bytes/s · transfer_utilization;
- `churn_hi_p` / `churn_lo_p`: change[p] ≥ ±(count[p] − running[p]).
Memory fit, TTFT including the KV transfer and the CSD rule are enforced when the options are generated
(an option exists only if it meets them); the independent checker re-verifies all of them.
"""

from __future__ import annotations

from collections import defaultdict

import pulp

from placement.ilp.problem import MIN_RATE, Problem, SolverOptions
from placement.ilp.variables import Variables


def add_served(model: pulp.LpProblem, problem: Problem, v: Variables) -> None:
    terms: dict[int, list[pulp.LpVariable]] = defaultdict(list)
    for k, o in enumerate(problem.colocated):
        terms[o.demand].append(v.coloc[k])
    for k, d in enumerate(problem.disaggregated):
        terms[d.demand].append(v.disagg[k])
    for c, demand in enumerate(problem.demands):
        if demand.rate <= MIN_RATE:
            continue
        extra = [v.unserved[c]] if v.unserved else []
        model += pulp.lpSum(terms[c] + extra) == 1, f"served_{c}"


def add_capacity(model: pulp.LpProblem, problem: Problem, v: Variables) -> None:
    load: dict[int, list[pulp.LpAffineExpression]] = defaultdict(list)
    for k, o in enumerate(problem.colocated):
        load[o.pool].append(problem.demands[o.demand].rate * o.load * v.coloc[k])
    for k, d in enumerate(problem.disaggregated):
        rate = problem.demands[d.demand].rate
        load[d.prefill_pool].append(rate * d.prefill_load * v.disagg[k])
        load[d.decode_pool].append(rate * d.decode_load * v.disagg[k])
    for p in range(len(problem.pools)):
        model += pulp.lpSum(load[p]) <= v.count[p], f"capacity_{p}"


def add_inventory(model: pulp.LpProblem, problem: Problem, v: Variables) -> None:
    by_type: dict[str, list[pulp.LpVariable]] = defaultdict(list)
    for p, pool in enumerate(problem.pools):
        by_type[pool.node_type].append(v.count[p])
    for t, (node_type, counts) in enumerate(sorted(by_type.items())):
        if node_type in problem.inventory:
            model += pulp.lpSum(counts) <= problem.inventory[node_type], f"inventory_{t}"


def add_transfer(model: pulp.LpProblem, problem: Problem, v: Variables, options: SolverOptions) -> None:
    egress: dict[int, list[pulp.LpAffineExpression]] = defaultdict(list)
    ingress: dict[int, list[pulp.LpAffineExpression]] = defaultdict(list)
    for k, d in enumerate(problem.disaggregated):
        demand = problem.demands[d.demand]
        flow = demand.rate * demand.kv_transfer_bytes * v.disagg[k]
        egress[d.prefill_pool].append(flow)
        ingress[d.decode_pool].append(flow)
    for kind, flows in (("egress", egress), ("ingress", ingress)):
        for p, terms in flows.items():
            bandwidth = problem.pools[p].network_bytes_per_second * options.transfer_utilization
            if bandwidth != float("inf"):
                # scaled to GB/s so the row's coefficients stay near 1 (numerics)
                model += pulp.lpSum(terms) * 1e-9 <= v.count[p] * bandwidth * 1e-9, f"{kind}_{p}"


def add_churn(model: pulp.LpProblem, problem: Problem, v: Variables) -> None:
    for p, pool in enumerate(problem.pools):
        running = problem.current.get(pool.name, 0)
        model += v.change[p] >= v.count[p] - running, f"churn_hi_{p}"
        model += v.change[p] >= running - v.count[p], f"churn_lo_{p}"
