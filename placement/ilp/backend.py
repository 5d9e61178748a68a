"""The solver backend: run a pulp model on HiGHS (`pulp.HiGHS`, the highspy API; CBC when HiGHS is
missing or asked for) quietly, within the time limit and relative gap of `SolverOptions`, and read the
outcome as a `SolveInfo`.

Optimality comes from pulp's solution status (`sol_status`), not the status string: a MIP stopped by
its time limit has status "Optimal" in pulp but `sol_status` LpSolutionIntegerFeasible. The relative
gap is HiGHS's `mip_gap` info value (0 when proven optimal; None when unknown, as for a CBC stop).
"""

from __future__ import annotations

import time
import warnings

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


def _make(options: SolverOptions) -> tuple[str, pulp.LpSolver]:
    if options.solver == "highs" and pulp.HiGHS().available():
        return "highs", pulp.HiGHS(msg=False, timeLimit=options.time_limit_seconds, gapRel=options.mip_gap)
    # PULP_CBC_CMD (the bundled CBC) is deprecated for PuLP 4, but still the one pulp ships
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return "cbc", pulp.PULP_CBC_CMD(
            msg=False, timeLimit=options.time_limit_seconds, gapRel=options.mip_gap
        )


def run(model: pulp.LpProblem, options: SolverOptions) -> SolveInfo:
    """Solve `model` in place (pulp sets variable values) and report status, gap and wall time."""
    name, solver = _make(options)
    started = time.perf_counter()
    model.solve(solver)
    seconds = time.perf_counter() - started
    status = _SOL_STATUS.get(model.sol_status, "not_solved")
    if model.status == pulp.LpStatusInfeasible:
        status = "infeasible"
    gap: float | None = None
    if name == "highs" and status in ("optimal", "feasible"):
        try:
            gap = float(model.solverModel.getInfo().mip_gap)
        except AttributeError:
            gap = None
        if gap is not None and (gap != gap or gap > 1e20):  # LP (no MIP info) reports inf / nan
            gap = 0.0 if status == "optimal" else None
    if status == "optimal" and gap is None:
        gap = 0.0
    objective = pulp.value(model.objective) if status in ("optimal", "feasible") else None
    return SolveInfo(
        name, status, status == "optimal", gap, seconds, float(objective) if objective is not None else None
    )
