"""Hand-sized ILP instances with known optima, infeasibility explanations, churn."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InfeasibleError
from placement.ilp.problem import (
    ColocatedOption,
    Demand,
    DisaggregatedOption,
    PoolSpec,
    Problem,
    SolverOptions,
)
from placement.solve import solve
from tests.placement.verify import verify


def pd_problem(**kw: object) -> Problem:
    """One class at 10 req/s. Colocated G: $10, 2 req/s each → 5 × 10 = $50. P/D: prefill P $4 at
    10 req/s, decode D $6 at 4 req/s → 1 P + 3 D = $22; every colocated/P-D mix costs more (worked
    by hand: x=0.1 → 10+4+18=32, x=0.2 → 10+4+12=26)."""
    pools = (
        PoolSpec("m", "G", "colocated", 10.0),
        PoolSpec("m", "P", "prefill", 4.0, 1e9),
        PoolSpec("m", "D", "decode", 6.0, 1e9),
    )
    base = Problem(
        (Demand("m/s/i0o0", "m", "s", 10.0, kv_transfer_bytes=1e6),),
        pools,
        (ColocatedOption(0, 0, 0.5),),
        (DisaggregatedOption(0, 1, 2, 0.1, 0.25, 0.01),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_disaggregation_wins_known_optimum(solver: str) -> None:
    s = solve(pd_problem(), SolverOptions(solver=solver))  # type: ignore[arg-type]
    assert s.cost_per_hour == pytest.approx(22.0)
    assert s.counts == (0, 1, 3)
    assert dict(s.disaggregated_shares) == pytest.approx({0: 1.0})
    assert s.info.optimal and s.info.gap == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_min_replicas_puts_two_in_every_used_pool(solver: str) -> None:
    # The unconstrained optimum 1 P + 3 D has a single prefill worker; the floor of 2 makes it 2 P + 3 D
    # ($26), still cheaper than any colocated mix (a colocated share would need 2 G at $20 more).
    s = solve(pd_problem(), SolverOptions(solver=solver, min_replicas=2))  # type: ignore[arg-type]
    assert s.counts == (0, 2, 3) and s.cost_per_hour == pytest.approx(26.0)


def test_min_replicas_is_capped_by_the_inventory() -> None:
    # One P node in the fleet: the floor cannot apply to P (1 P + 3 D stays); unused pools stay at 0.
    s = solve(pd_problem(inventory={"P": 1}), SolverOptions(min_replicas=2))
    assert s.counts == (0, 1, 3)
    s3 = solve(pd_problem(), SolverOptions(min_replicas=4))
    assert s3.counts == (0, 4, 4) and s3.cost_per_hour == pytest.approx(40.0)


def test_min_replicas_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        SolverOptions(min_replicas=0)


def test_colocated_only_known_optimum() -> None:
    s = solve(pd_problem().without_disaggregation())
    assert s.cost_per_hour == pytest.approx(50.0) and s.counts == (5, 0, 0)


def test_transfer_bandwidth_limits_the_disaggregated_share() -> None:
    # 10 req/s × 1 GB = 10 GB/s of KV; one P at 2.5 GB/s NIC × 0.8 carries 2 GB/s → P/D needs 5 P
    # (5×4 + 3×6 = 38) unless it mixes with colocated; the optimum must respect egress either way.
    tight = replace(
        pd_problem(),
        demands=(Demand("m/s/i0o0", "m", "s", 10.0, kv_transfer_bytes=1e9),),
        pools=(
            PoolSpec("m", "G", "colocated", 10.0),
            PoolSpec("m", "P", "prefill", 4.0, 2.5e9),
            PoolSpec("m", "D", "decode", 6.0, 1e12),
        ),
    )
    s = solve(tight)
    share = s.disaggregated_shares.get(0, 0.0)
    assert share * 10.0 * 1e9 <= s.counts[1] * 2.5e9 * 0.8 + 1e-3
    assert s.cost_per_hour == pytest.approx(38.0)


def test_inventory_infeasible_names_class_and_constraint() -> None:
    problem = pd_problem(inventory={"G": 1, "P": 1, "D": 1})
    with pytest.raises(InfeasibleError) as err:
        solve(problem)
    assert err.value.request_class == "m/s/i0o0"
    assert err.value.constraint == "inventory"
    assert "inventory of" in str(err.value) and "m/s/i0o0" in str(err.value)


def test_class_without_options_is_explained_before_solving() -> None:
    problem = replace(
        pd_problem(),
        colocated=(),
        disaggregated=(),
        exclusions={"m/s/i0o0": ("tpot: one decode step takes 0.2 s on X, budget 0.09 s",)},
    )
    with pytest.raises(InfeasibleError) as err:
        solve(problem)
    assert err.value.constraint == "tpot" and "m/s/i0o0" in str(err.value) and "0.2 s" in str(err.value)


def test_churn_penalty_keeps_running_plan() -> None:
    # Running: 5 colocated G. Moving to P/D saves $28/h but changes 1 + 3 + 5 = 9 instances.
    cheap = solve(pd_problem(current={"m:G:colocated": 5}, churn_penalty=1.0))
    assert cheap.counts == (0, 1, 3)
    sticky = solve(pd_problem(current={"m:G:colocated": 5}, churn_penalty=10.0))
    assert sticky.counts == (5, 0, 0)


def test_solve_does_not_mutate_problem() -> None:
    problem = pd_problem()
    before = repr(problem)
    solve(problem)
    assert repr(problem) == before


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_problems_solutions_verify(data: st.DataObject) -> None:
    num_types = data.draw(st.integers(1, 3))
    prices = [data.draw(st.floats(0.5, 20.0)) for _ in range(num_types)]
    pools = tuple(
        PoolSpec("m", f"t{t}", role, prices[t], data.draw(st.floats(1e8, 1e10)))
        for t in range(num_types)
        for role in ("colocated", "prefill", "decode")
    )
    demands = tuple(
        Demand(f"m/s/i{c}o0", "m", "s", data.draw(st.floats(0.1, 30.0)), data.draw(st.floats(0.0, 5e8)))
        for c in range(data.draw(st.integers(1, 4)))
    )
    coloc, disagg = [], []
    for c in range(len(demands)):
        for t in range(num_types):
            coloc.append(ColocatedOption(c, 3 * t, data.draw(st.floats(0.01, 2.0))))
            for u in range(num_types):
                disagg.append(
                    DisaggregatedOption(
                        c,
                        3 * t + 1,
                        3 * u + 2,
                        data.draw(st.floats(0.01, 1.0)),
                        data.draw(st.floats(0.01, 1.0)),
                        0.01,
                    )
                )
    inventory = {f"t{t}": data.draw(st.integers(5, 60)) for t in range(num_types) if data.draw(st.booleans())}
    problem = Problem(demands, pools, tuple(coloc), tuple(disagg), inventory)
    try:
        s = solve(problem)
    except InfeasibleError as exc:
        assert exc.constraint and exc.request_class  # explained
        return
    assert verify(problem, s) == []
    assert s.cost_per_hour == pytest.approx(
        sum(n * p.price_per_hour for n, p in zip(s.counts, pools, strict=True))
    )
