"""Per-model bounds and the joint start (`placement.ilp.decompose`): valid bounds, a start that fits
the inventory, and the same optimum as the plain joint ILP."""

from __future__ import annotations

from dataclasses import replace

import pulp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InfeasibleError
from placement.ilp import decompose
from placement.ilp.backend import run
from placement.ilp.model import _solve_part, build_model
from placement.ilp.problem import (
    ColocatedOption,
    Demand,
    DisaggregatedOption,
    PoolSpec,
    Problem,
    SolverOptions,
)
from placement.ilp.result import Solution, SolveInfo
from placement.ilp.split import restrict
from placement.solve import solve
from tests.placement.verify import verify

FORCED = SolverOptions(decompose_min_classes=2)
PLAIN = SolverOptions(decompose_min_classes=None)


def contested() -> Problem:
    """Models a and b, one class each at 1 req/s, colocated on A ($1, 1 node in the fleet) or B ($3),
    load 1: alone, each takes the A node (LB 1 each); together one must move to B: optimum $4."""
    pools = tuple(PoolSpec(m, t, "colocated", price) for m in "ab" for t, price in (("A", 1.0), ("B", 3.0)))
    demands = (Demand("a/s/i0o0", "a", "s", 1.0), Demand("b/s/i0o0", "b", "s", 1.0))
    coloc = tuple(ColocatedOption(c, 2 * c + t, 1.0) for c in range(2) for t in range(2))
    return Problem(demands, pools, coloc, (), {"A": 1, "B": 4})


def as_solution(start: decompose.PartResult) -> Solution:
    info = SolveInfo("highs", "feasible", False, None, 0.0, start.info.objective)
    return Solution(
        tuple(round(n) for n in start.counts),
        {k: x for k, x in enumerate(start.coloc) if x > 0},
        {k: z for k, z in enumerate(start.disagg) if z > 0},
        start.info.objective or 0.0,
        info,
    )


def test_overfilled_inventory_is_repaired_and_bounds_are_the_models_alone() -> None:
    problem = contested()
    parts = decompose.decompose(problem, FORCED, _solve_part)
    assert parts.bounds == pytest.approx({"a": 1.0, "b": 1.0})
    assert parts.start is not None
    # a (first by bound, then name) keeps the A node; b is re-solved on what is left: B.
    assert parts.start.counts == (1.0, 0.0, 0.0, 1.0)
    assert parts.start.info.objective == pytest.approx(4.0)
    assert verify(problem, as_solution(parts.start)) == []


def test_decomposed_solve_reports_the_solvers_bound_and_gap() -> None:
    s = solve(contested(), FORCED)
    assert s.cost_per_hour == pytest.approx(4.0) and s.counts == (1, 0, 0, 1)
    assert s.info.bound is not None and s.info.bound <= s.cost_per_hour + 1e-9
    assert s.info.gap is not None and s.info.gap <= FORCED.mip_gap


def test_small_instances_are_not_decomposed_by_default() -> None:
    assert not decompose.applies(contested(), SolverOptions())
    assert decompose.applies(contested(), FORCED)
    assert not decompose.applies(contested(), replace(FORCED, solver="cbc"))
    assert not decompose.applies(restrict(contested(), {"a"}), FORCED)


def test_infeasible_inventory_is_still_explained_when_decomposed() -> None:
    problem = replace(contested(), inventory={"A": 1, "B": 0})
    with pytest.raises(InfeasibleError) as err:
        solve(problem, FORCED)
    assert err.value.constraint


def test_an_infeasible_start_is_dropped_not_trusted() -> None:
    model, v = build_model(contested(), SolverOptions())
    for x in (*v.count, *v.coloc, *v.disagg):
        x.setInitialValue(0.0)  # serves nothing: violates served_0 and served_1
    info = run(model, SolverOptions(), start=True)
    assert info.optimal and pulp.value(model.objective) == pytest.approx(4.0)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_decomposed_solve_matches_the_plain_joint_ilp(data: st.DataObject) -> None:
    models = [f"m{i}" for i in range(data.draw(st.integers(2, 3)))]
    types = ["t0", "t1", "t2"]
    prices = {t: data.draw(st.floats(0.5, 20.0)) for t in types}
    pools = tuple(
        PoolSpec(m, t, role, prices[t], 1e10) for m in models for t in types
        for role in ("colocated", "prefill", "decode")
    )
    index = {p.name: i for i, p in enumerate(pools)}
    demands, coloc, disagg = [], [], []
    for m in models:
        for _ in range(data.draw(st.integers(1, 3))):
            c = len(demands)
            demands.append(Demand(f"{m}/s/i{c}o0", m, "s", data.draw(st.floats(0.1, 20.0)), 1e6))
            for t in types:
                coloc.append(ColocatedOption(c, index[f"{m}:{t}:colocated"], data.draw(st.floats(0.05, 2.0))))
            t, u = data.draw(st.sampled_from(types)), data.draw(st.sampled_from(types))
            prefill, decode = data.draw(st.floats(0.05, 1.0)), data.draw(st.floats(0.05, 1.0))
            disagg.append(DisaggregatedOption(c, index[f"{m}:{t}:prefill"], index[f"{m}:{u}:decode"],
                                              prefill, decode, 0.01))
    inventory = {t: data.draw(st.integers(1, 12)) for t in types if data.draw(st.booleans())}
    current = {pools[0].name: data.draw(st.integers(0, 3))}
    problem = Problem(tuple(demands), pools, tuple(coloc), tuple(disagg), inventory, current,
                      data.draw(st.sampled_from([0.0, 0.5])))
    replicas = data.draw(st.sampled_from([1, 2]))
    try:
        plain = solve(problem, replace(PLAIN, min_replicas=replicas))
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            solve(problem, replace(FORCED, min_replicas=replicas))
        return
    split = solve(problem, replace(FORCED, min_replicas=replicas))
    assert verify(problem, split) == []
    churn = problem.churn_penalty * sum(
        abs(n - problem.current.get(p.name, 0)) for n, p in zip(split.counts, pools, strict=True)
    )
    # both optimal within mip_gap 1e-4: the same objective (cost + churn)
    assert split.info.objective == pytest.approx(plain.info.objective, rel=1e-3, abs=1e-6)
    assert split.cost_per_hour + churn == pytest.approx(split.info.objective, rel=1e-6, abs=1e-6)
    assert split.info.bound is not None and split.info.bound <= split.info.objective + 1e-6
