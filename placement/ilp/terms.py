"""The sums the ILP's rows are made of, grouped per class, pool or node type (helpers of `model.py`).

Each returns lists of pulp terms in option order (k ascending), so the model pulp builds, and with it
the solver's path to an optimum, does not depend on dict or set iteration order.
Units: rates in req/s, loads in instances per req/s, KV flows in bytes/s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TypeAlias

import pulp

from placement.ilp.problem import Problem

Var: TypeAlias = pulp.LpVariable
Expr: TypeAlias = pulp.LpAffineExpression


def shares_by_class(problem: Problem, coloc: Sequence[Var], disagg: Sequence[Var]) -> dict[int, list[Var]]:
    """Class index → the share variables of its colocated options, then of its P/D routes."""
    shares: dict[int, list[Var]] = defaultdict(list)
    for k, o in enumerate(problem.colocated):
        shares[o.demand].append(coloc[k])
    for k, d in enumerate(problem.disaggregated):
        shares[d.demand].append(disagg[k])
    return shares


def load_by_pool(problem: Problem, coloc: Sequence[Var], disagg: Sequence[Var]) -> dict[int, list[Expr]]:
    """Pool index → rate · share · load of every option using it (instances). A P/D route puts its
    prefill load on its prefill pool and its decode load on its decode pool."""
    load: dict[int, list[Expr]] = defaultdict(list)
    for k, o in enumerate(problem.colocated):
        load[o.pool].append(problem.demands[o.demand].rate * o.load * coloc[k])
    for k, d in enumerate(problem.disaggregated):
        rate = problem.demands[d.demand].rate
        load[d.prefill_pool].append(rate * d.prefill_load * disagg[k])
        load[d.decode_pool].append(rate * d.decode_load * disagg[k])
    return load


def counts_by_node_type(problem: Problem, count: Sequence[Var]) -> list[tuple[str, list[Var]]]:
    """(node type, count variables of its pools), sorted by node type: row `inventory_t` is entry t."""
    by_type: dict[str, list[Var]] = defaultdict(list)
    for p, pool in enumerate(problem.pools):
        by_type[pool.node_type].append(count[p])
    return sorted(by_type.items())


def kv_flows(problem: Problem, disagg: Sequence[Var]) -> tuple[dict[int, list[Expr]], dict[int, list[Expr]]]:
    """(egress, ingress): pool index → KV bytes/s leaving it as a prefill pool / entering it as a
    decode pool, rate · kv_transfer_bytes · share per P/D route."""
    egress: dict[int, list[Expr]] = defaultdict(list)
    ingress: dict[int, list[Expr]] = defaultdict(list)
    for k, d in enumerate(problem.disaggregated):
        demand = problem.demands[d.demand]
        flow = demand.rate * demand.kv_transfer_bytes * disagg[k]
        egress[d.prefill_pool].append(flow)
        ingress[d.decode_pool].append(flow)
    return egress, ingress
