"""Explaining infeasible placement problems: which class cannot be served, and which constraint binds.

1. Pre-check per class (cheap, before solving): a class with positive rate but no option at all is
   reported with the reasons its options were excluded (memory, KV capacity, TTFT incl. transfer, TPOT,
   CSD rule), as recorded in `Problem.exclusions`.
2. Elastic re-solve (only after the ILP says infeasible): every class may leave a share unserved at a
   large price. Classes left partly unserved are named; the binding constraint is the inventory or
   KV-transfer row that is tight in that solution.
"""

from __future__ import annotations

from common.errors import InfeasibleError
from placement.ilp.problem import MIN_RATE, Problem, SolverOptions

TIGHT = 1e-6


def precheck(problem: Problem) -> None:
    """Raise InfeasibleError for the first class (with rate > 0) that has no option at all."""
    has_option = {o.demand for o in problem.colocated} | {d.demand for d in problem.disaggregated}
    for c, demand in enumerate(problem.demands):
        if demand.rate > MIN_RATE and c not in has_option:
            reasons = problem.exclusions.get(demand.name, ())
            why = (
                "; ".join(reasons[:3]) + (f"; … {len(reasons) - 3} more" if len(reasons) > 3 else "")
                if reasons
                else "no node type in the fleet can serve it"
            )
            binding = _binding_kind(reasons)
            raise InfeasibleError(
                f"class {demand.name} ({demand.rate:g} req/s) cannot be served by any pool: {why}",
                constraint=binding,
                request_class=demand.name,
            )


def _binding_kind(reasons: tuple[str, ...]) -> str:
    for kind in ("ttft", "tpot", "kv_capacity", "memory", "csd"):
        if any(r.startswith(kind) for r in reasons):
            return kind
    return "no_option"


def explain_infeasible(problem: Problem, options: SolverOptions) -> InfeasibleError:
    """Elastic re-solve of an infeasible problem → the error to raise (never raises itself)."""
    from placement.ilp.solve import build_model, extract
    from placement.ilp.solver import run

    model, v = build_model(problem, options, elastic=True)
    info = run(model, options)
    if not info.has_solution:
        return InfeasibleError(
            f"placement infeasible (elastic re-solve: {info.status})", constraint="unknown"
        )
    solution = extract(problem, v, info)
    if not solution.unserved:
        return InfeasibleError(
            "placement infeasible for numerical reasons; relax the SLOs slightly", constraint="numerics"
        )
    c, share = max(solution.unserved.items(), key=lambda kv: kv[1] * problem.demands[kv[0]].rate)
    demand = problem.demands[c]
    tight = [
        row.name
        for row in model.constraints()
        if row.name.startswith(("inventory_", "egress_", "ingress_")) and abs(row.slack or 0) <= TIGHT
    ]
    binding = _describe(problem, tight[0]) if tight else "capacity"
    return InfeasibleError(
        f"class {demand.name} ({demand.rate:g} req/s) can be served only to {100 * (1 - share):.0f}%: "
        f"binding constraint {binding}",
        constraint=tight[0].split("_")[0] if tight else "capacity",
        request_class=demand.name,
    )


def _describe(problem: Problem, row: str) -> str:
    kind, index = row.rsplit("_", 1)
    if kind == "inventory":
        node_type = sorted({p.node_type for p in problem.pools})[int(index)]
        return f"inventory of {node_type} ({problem.inventory[node_type]} nodes, all used)"
    pool = problem.pools[int(index)]
    return f"KV transfer bandwidth ({kind}) of pool {pool.name}"
