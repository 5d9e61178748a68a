"""Decision variables of the placement ILP.

- `count[p]`  integer ≥ 0: instances of pool p (upper bound: the node type's inventory);
- `coloc[k]`  continuous in [0, 1]: share of colocated option k's class sent to its pool;
- `disagg[k]` continuous in [0, 1]: share of a class on P/D route k (prefill pool → decode pool);
- `change[p]` continuous ≥ 0: |count[p] − running count|, only when a churn penalty is set;
- `unserved[c]` continuous in [0, 1]: only in the elastic re-solve that explains infeasibility.
Names are index-based (`n_3`, `x_12`, `z_40`) so any class or pool name is safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulp

from placement.ilp.problem import Problem


@dataclass(frozen=True)
class Variables:
    count: tuple[pulp.LpVariable, ...]
    coloc: tuple[pulp.LpVariable, ...]
    disagg: tuple[pulp.LpVariable, ...]
    change: tuple[pulp.LpVariable, ...]
    unserved: tuple[pulp.LpVariable, ...]


def make_variables(model: pulp.LpProblem, problem: Problem, *, elastic: bool = False) -> Variables:
    """Create the variables on `model` (pulp ≥ 3.3 attaches variables to their model)."""
    add = model.add_variable
    counts = tuple(
        add(f"n_{i}", 0, problem.inventory.get(p.node_type), cat="Integer")
        for i, p in enumerate(problem.pools)
    )
    coloc = tuple(add(f"x_{k}", 0, 1) for k in range(len(problem.colocated)))
    disagg = tuple(add(f"z_{k}", 0, 1) for k in range(len(problem.disaggregated)))
    change = tuple(add(f"d_{i}", 0) for i in range(len(problem.pools))) if problem.churn_penalty > 0 else ()
    unserved = tuple(add(f"u_{c}", 0, 1) for c in range(len(problem.demands))) if elastic else ()
    return Variables(counts, coloc, disagg, change, unserved)
