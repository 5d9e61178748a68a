"""Explaining infeasible placement problems: which class cannot be served, and which constraint binds.

1. `precheck` (cheap, before solving): a class with positive rate but no option at all is reported
   with the reasons its options were excluded (memory, KV capacity, TTFT incl. transfer, TPOT, CSD
   rule), as recorded in `Problem.exclusions`.
2. `explain` (after `ilp.model.optimize` returned `Unsolved`): a proven-infeasible problem is re-solved
   elastically (every class may leave a share unserved at a large price); the class left most unserved
   is named, and the binding constraint is the inventory or KV-transfer row that is tight in that
   solution. A solve stopped by its time limit is reported as such.
Both return or raise `InfeasibleError`; `placement.solve.solve` composes them with the ILP.
"""

from __future__ import annotations

from common.errors import InfeasibleError
from placement.ilp.backend import run
from placement.ilp.model import build_model, read_solution
from placement.ilp.problem import MIN_RATE, Problem, SolverOptions
from placement.ilp.result import Unsolved

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


def explain(unsolved: Unsolved) -> InfeasibleError:
    """The error to raise for an `Unsolved` ILP result (never raises itself)."""
    info, options = unsolved.info, unsolved.options
    if info.status != "infeasible":
        return InfeasibleError(
            f"solver {info.solver} found no plan within {options.time_limit_seconds} s "
            f"(status {info.status}); raise the time limit",
            constraint="time_limit",
        )
    return _elastic(unsolved.problem, options)


def _elastic(problem: Problem, options: SolverOptions) -> InfeasibleError:
    model, v = build_model(problem, options, elastic=True)
    info = run(model, options)
    if not info.has_solution:
        return InfeasibleError(
            f"placement infeasible (elastic re-solve: {info.status})", constraint="unknown"
        )
    solution = read_solution(problem, v, info)
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
