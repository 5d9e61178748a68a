"""The ILP's typed output: `Solution` when a plan was found, `Unsolved` when none was, and `SolveInfo`
(how the solver run went) inside both.

Indices refer to the solved `Problem`: counts per pool index, shares per option index. Costs in $/h.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from placement.ilp.problem import Problem, SolverOptions


@dataclass(frozen=True)
class SolveInfo:
    """How a solve went. `status`: optimal | feasible | infeasible | unbounded | not_solved.
    `gap`: relative MIP gap (None when unknown); `objective` in $/h (None without a solution);
    `bound`: the solver's proven lower bound on the objective, $/h (None when unknown)."""

    solver: str
    status: str
    optimal: bool
    gap: float | None
    solve_seconds: float
    objective: float | None
    bound: float | None = None

    @property
    def has_solution(self) -> bool:
        return self.status in ("optimal", "feasible")


@dataclass(frozen=True)
class Solution:
    """Counts per pool index, shares per option index (only non-zero ones), cost in $/h.
    `unserved`: class index → share left unserved (only in the elastic re-solve of `placement.explain`)."""

    counts: tuple[int, ...]
    colocated_shares: Mapping[int, float]
    disaggregated_shares: Mapping[int, float]
    cost_per_hour: float
    info: SolveInfo
    unserved: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("colocated_shares", "disaggregated_shares", "unserved"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True)
class Unsolved:
    """The ILP found no plan. `problem`: the (per-model sub-)problem that failed; `options`: what it was
    solved with; `info.status`: infeasible (proven), not_solved (time limit) or unbounded.
    `placement.explain.explain` turns it into an `InfeasibleError` naming the class and the binding row."""

    problem: Problem
    options: SolverOptions
    info: SolveInfo
