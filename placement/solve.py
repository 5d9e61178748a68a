"""`solve`: the placement ILP with explanations, the one entry the planning paths call
(`planning.make_plan`, the baselines, `heteroserve plan`, the running planner, the benchmarks).

It composes three pure steps: `explain.precheck` (a class with no option at all, before solving),
`ilp.model.optimize` (Problem → Solution | Unsolved) and, when no plan was found, `explain.explain`
(the class that cannot be served and the binding constraint). No printing, no mutation of the problem.
"""

from __future__ import annotations

from placement.explain import explain, precheck
from placement.ilp.model import optimize
from placement.ilp.problem import Problem, SolverOptions
from placement.ilp.result import Solution, Unsolved


def solve(problem: Problem, options: SolverOptions | None = None) -> Solution:
    """Cheapest counts and routing shares meeting every constraint; raises InfeasibleError naming
    the class that cannot be served and the binding constraint."""
    options = options or SolverOptions()
    precheck(problem)
    result = optimize(problem, options)
    if isinstance(result, Unsolved):
        raise explain(result)
    return result
