"""The solver backend: run a pulp model on HiGHS (`pulp.HiGHS`, the highspy API; CBC when HiGHS is
missing or asked for) quietly, within the time limit and relative gap of `SolverOptions`, and read the
outcome as a `SolveInfo`.

Optimality comes from pulp's solution status (`sol_status`), not the status string: a MIP stopped by
its time limit has status "Optimal" in pulp but `sol_status` LpSolutionIntegerFeasible. The relative
gap is HiGHS's `mip_gap` info value (0 when proven optimal; None when unknown, as for a CBC stop), and
the bound its `mip_dual_bound`.

A start (`run(..., start=True)`): the variables' current values (pulp's `setInitialValue`) are handed to
HiGHS with `setSolution` before the solve, so branch and bound begins with that incumbent. HiGHS checks
it: an infeasible start is dropped, never trusted. (pulp's highspy class ignores `warmStart`.)
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import pulp

from placement.ilp.problem import SolverOptions
from placement.ilp.result import SolveInfo

_SOL_STATUS = {
    pulp.LpSolutionOptimal: "optimal",
    pulp.LpSolutionIntegerFeasible: "feasible",
    pulp.LpSolutionInfeasible: "infeasible",
    pulp.LpSolutionUnbounded: "unbounded",
    pulp.LpSolutionNoSolutionFound: "not_solved",
}


# One HiGHS thread per solve, for every solve in the process. HiGHS's branch and bound is serial (extra
# threads only serve a few parallel LP tasks), and the per-model parts of `decompose` run side by side in
# Python threads: two solves of 2 HiGHS threads each on this 2-core machine took twice as long each.
# It must be one value for all solves: HiGHS's scheduler is global to the process and fails a run
# (model status not set, no solve) whose `threads` differs from the count it was first started with.
HIGHS_THREADS = 1


class _HiGHSWithStart(pulp.HiGHS):
    """pulp's highspy solver, plus a MIP start from the variables' values (`setInitialValue`)."""

    def callSolver(self, lp: pulp.LpProblem) -> None:
        import highspy

        solution = highspy.HighsSolution()
        solution.col_value = [float(v.varValue or 0.0) for v in sorted(lp.variables(), key=_index)]
        solution.value_valid = True
        lp.solverModel.setSolution(solution)
        lp.solverModel.run()


def _index(var: Any) -> int:
    return int(var.index)


def _make(options: SolverOptions, start: bool) -> tuple[str, pulp.LpSolver]:
    if options.solver == "highs" and pulp.HiGHS().available():
        kind = _HiGHSWithStart if start else pulp.HiGHS
        return "highs", kind(
            msg=False, timeLimit=options.time_limit_seconds, gapRel=options.mip_gap, threads=HIGHS_THREADS
        )
    # PULP_CBC_CMD (the bundled CBC) is deprecated for PuLP 4, but still the one pulp ships
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return "cbc", pulp.PULP_CBC_CMD(
            msg=False, timeLimit=options.time_limit_seconds, gapRel=options.mip_gap
        )


def run(model: pulp.LpProblem, options: SolverOptions, *, start: bool = False) -> SolveInfo:
    """Solve `model` in place (pulp sets variable values) and report status, gap, bound and wall time.
    `start`: pass the variables' values as a MIP start (HiGHS only)."""
    name, solver = _make(options, start)
    started = time.perf_counter()
    model.solve(solver)
    seconds = time.perf_counter() - started
    status = _SOL_STATUS.get(model.sol_status, "not_solved")
    if model.status == pulp.LpStatusInfeasible:
        status = "infeasible"
    gap: float | None = None
    bound: float | None = None
    if name == "highs" and status in ("optimal", "feasible"):
        try:
            info = model.solverModel.getInfo()
            gap, bound = float(info.mip_gap), float(info.mip_dual_bound)
        except AttributeError:
            gap = None
        if gap is not None and (gap != gap or gap > 1e20):  # LP (no MIP info) reports inf / nan
            gap = 0.0 if status == "optimal" else None
        if bound is not None and (bound != bound or abs(bound) > 1e20):
            bound = None
    if status == "optimal" and gap is None:
        gap = 0.0
    objective = pulp.value(model.objective) if status in ("optimal", "feasible") else None
    objective = float(objective) if objective is not None else None
    if bound is None and status == "optimal":
        bound = objective
    return SolveInfo(name, status, status == "optimal", gap, seconds, objective, bound)
