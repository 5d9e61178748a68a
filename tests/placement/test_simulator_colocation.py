"""Simulator behaviours `bench fidelity` found in the live cluster: decode-alone P/D below the gateway's
threshold, instances sharing cores, per-pool throughput, a first-token overhead, and step times scaled
by a probe."""

from __future__ import annotations

import pytest

from placement.catalog import Catalog
from placement.models import ModelSpec
from placement.perf.steps import ScaledSteps
from placement.plan import Classifier, ClassRouting, Plan, Pool, Route, SolveSummary
from placement.profile_file import TransferPoint, WakeCost
from placement.simulator import SimOptions, SimRequest, SimResult, simulate
from placement.workload import SLOClass
from tests.placement.simulated import FixedSteps

MODEL, NODE = "llama2-7b", "L4x8"


def plan_of(pools: dict[str, tuple[str, int]], route: Route) -> Plan:
    """One class (every request) on `route`; pools name → (role, count)."""
    return Plan(tuple(Pool(name, MODEL, NODE, role, count, 1.0) for name, (role, count) in pools.items()),
                (ClassRouting(f"{MODEL}/interactive/i0o0", MODEL, "interactive", (0, 0), 1.0, (route,)),),
                Classifier((0, 1_000_000), (0, 1_000_000), ("interactive",), "interactive"), 1.0, (),
                SolveSummary("test", "optimal", True, 0.0, 0.0))


Env = tuple[Catalog, dict[str, ModelSpec], dict[str, SLOClass]]


@pytest.fixture
def env(catalog: Catalog, models: dict[str, ModelSpec]) -> Env:
    assert MODEL in models, f"{MODEL} is no longer a shipped model; pick another one here"
    return catalog.subset([NODE]), models, {"interactive": SLOClass("interactive", 10.0, 1.0)}


def options(**kw: object) -> SimOptions:
    steps = {(NODE, role): FixedSteps(0.2, 0.01) for role in ("colocated", "prefill", "decode")}
    transfer = {NODE: TransferPoint("peer", 1, 0.1, 1e18, latency_seconds=0.1)}
    return SimOptions(steps=steps, transfer=transfer, **kw)  # type: ignore[arg-type]


def test_a_short_prompt_on_a_pd_route_runs_on_the_decode_pool_alone(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"p": ("prefill", 1), "d": ("decode", 1)}, Route(1.0, prefill_pool="p", decode_pool="d"))
    short, long = SimRequest(0.0, 100, 5, MODEL, "interactive"), SimRequest(0.0, 400, 5, MODEL, "interactive")
    alone = simulate(plan, [short], fleet, models, slos, options(pd_min_input_tokens=256))
    assert alone.disaggregated_fraction == 0.0
    assert alone.ttft_p50 == pytest.approx(0.2)  # prefilled on the decode instance: no transfer
    assert dict(alone.throughput) == {"d": pytest.approx(1 / alone.duration_seconds)}
    pd = simulate(plan, [long], fleet, models, slos, options(pd_min_input_tokens=256))
    assert pd.disaggregated_fraction == 1.0
    assert pd.ttft_p50 == pytest.approx(0.2 + 0.1)  # prefill, then the measured transfer's latency
    assert set(pd.throughput) == {"p", "d"}
    assert simulate(plan, [short], fleet, models, slos, options()).disaggregated_fraction == 1.0


def test_instances_pinned_to_one_core_share_it(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"c": ("colocated", 2)}, Route(1.0, pool="c"))
    both = [SimRequest(0.0, 100, 1, MODEL, "interactive"), SimRequest(0.0, 100, 1, MODEL, "interactive")]
    own = simulate(plan, both, fleet, models, slos, options())
    assert own.ttft_p90 == pytest.approx(0.2)  # one device each: both prefills take 0.2 s
    shared = simulate(plan, both, fleet, models, slos, options(cores=1))
    # the second prefill starts while the first instance of its core is busy: 2 × 0.2 s. TTFTs 0.2 and
    # 0.4 s: p50 0.3, p90 0.38 (linear interpolation)
    assert (shared.ttft_p50, shared.ttft_p90) == (pytest.approx(0.3), pytest.approx(0.38))
    two = simulate(plan, both, fleet, models, slos, options(cores=2))
    assert two.ttft_p90 == pytest.approx(0.2)  # round robin: one instance per core


def test_scaled_steps_multiply_the_base_and_keep_its_capacity() -> None:
    scaled = ScaledSteps(FixedSteps(0.2, 0.01), prefill_scale=1.5, decode_scale=3.0)
    assert scaled.prefill_seconds(100, 2) == pytest.approx(0.3)
    assert scaled.decode_step_seconds(4, 100) == pytest.approx(0.03)
    assert scaled.kv_capacity_tokens() == 1_000_000
    with pytest.raises(ValueError, match="decode_scale"):
        ScaledSteps(FixedSteps(0.2, 0.01), decode_scale=0.0)


def test_the_first_token_overhead_delays_entry_but_occupies_no_instance(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"c": ("colocated", 1)}, Route(1.0, pool="c"))
    two = [SimRequest(0.0, 100, 3, MODEL, "interactive"), SimRequest(1.0, 100, 3, MODEL, "interactive")]
    result = simulate(plan, two, fleet, models, slos, options(first_token_overhead_seconds=0.05))
    assert (result.ttft_p50, result.ttft_p90) == (pytest.approx(0.25), pytest.approx(0.25))
    assert result.tpot_p50 == pytest.approx(0.01)  # decode steps unchanged
    assert result.utilization["c"] * result.duration_seconds == pytest.approx(2 * (0.2 + 2 * 0.01))


def test_options_name_a_negative_field() -> None:
    with pytest.raises(ValueError, match="cores"):
        SimOptions(cores=-1)


def test_an_instance_woken_from_idle_pays_the_wake_cost_on_its_first_iteration(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"c": ("colocated", 1)}, Route(1.0, pool="c"))
    wake = options(wake={NODE: WakeCost(idle_seconds=0.5, seconds=0.03)})

    def run(arrivals: tuple[float, ...], opts: SimOptions) -> SimResult:
        reqs = [SimRequest(t, 100, 3, MODEL, "interactive") for t in arrivals]
        return simulate(plan, reqs, fleet, models, slos, opts)

    assert run((0.0,), wake).ttft_p50 == pytest.approx(0.23)  # instances start idle
    assert run((0.0,), wake).tpot_p50 == pytest.approx(0.01)  # only the first iteration pays
    slow = options(wake={NODE: WakeCost(idle_seconds=0.5, seconds=0.03, decode_scale=2.0, warm_seconds=0.24)})
    # decode steps starting before 0.24 s run 2 × 0.01 s: the first (at 0.23 s), not the second (0.25 s)
    assert run((0.0,), slow).tpot_p50 == pytest.approx((0.02 + 0.01) / 2)
    # the 1st request ends at 0.25 s; the 2nd comes 0.25 s later (< 0.5 s idle): no wake. TTFTs 0.23, 0.2
    near = run((0.0, 0.5), wake)
    assert (near.ttft_p50, near.ttft_p90) == (pytest.approx(0.215), pytest.approx(0.227))
    far = run((0.0, 3.0), wake)
    assert (far.ttft_p50, far.ttft_p90) == (pytest.approx(0.23), pytest.approx(0.23))
    plain = run((0.0, 3.0), options())
    assert far.utilization["c"] * far.duration_seconds == pytest.approx(
        plain.utilization["c"] * plain.duration_seconds + 2 * 0.03)  # the wakes count as busy time
    other = options(wake={"another-node-type": WakeCost(idle_seconds=0.5, seconds=0.03)})
    assert run((0.0, 3.0), other).ttft_p90 == pytest.approx(0.2)  # only its own node type's cost


def test_a_wake_cost_names_a_negative_field() -> None:
    with pytest.raises(ValueError, match=r"idle\.seconds"):
        WakeCost(idle_seconds=0.1, seconds=-0.001)
    with pytest.raises(ValueError, match=r"idle\.decode_scale"):
        WakeCost(idle_seconds=0.1, seconds=0.001, decode_scale=0.0)


def test_an_iteration_runs_slower_while_the_other_cores_are_busy_too(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"c": ("colocated", 2)}, Route(1.0, pool="c"))
    both = [SimRequest(0.0, 100, 1, MODEL, "interactive"), SimRequest(0.0, 100, 1, MODEL, "interactive")]
    apart = [SimRequest(0.0, 100, 1, MODEL, "interactive"), SimRequest(5.0, 100, 1, MODEL, "interactive")]
    slow = options(cores=2, core_slowdown=(1.0, 1.5))
    # the first prefill starts with one busy core (its own): 0.2 s; the second while both are: 0.3 s
    together = simulate(plan, both, fleet, models, slos, slow)
    assert (together.ttft_p50, together.ttft_p90) == (pytest.approx(0.25), pytest.approx(0.29))
    alone = simulate(plan, apart, fleet, models, slos, slow)
    assert alone.ttft_p90 == pytest.approx(0.2)  # never two busy cores: no slowdown
    beyond = simulate(plan, both, fleet, models, slos, options(cores=2, core_slowdown=(1.5,)))
    assert beyond.ttft_p90 == pytest.approx(0.3)  # past the tuple: its last entry
    with pytest.raises(ValueError, match="core_slowdown"):
        SimOptions(core_slowdown=(1.0, 1.5))  # without cores
    with pytest.raises(ValueError, match="core_slowdown"):
        SimOptions(cores=2, core_slowdown=(1.0, 0.0))


def test_step_budget_runs_decode_first_mixed_iterations(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"c": ("colocated", 1)}, Route(1.0, pool="c"))
    budget = options(step_token_budget=100)
    lone = simulate(plan, [SimRequest(0.0, 80, 3, MODEL, "interactive")], fleet, models, slos, budget)
    assert lone.ttft_p50 == pytest.approx(0.2) and lone.tpot_p50 == pytest.approx(0.01)
    # a 250-token prompt takes three chunks of at most 100 tokens: three iterations before its first token
    long = simulate(plan, [SimRequest(0.0, 250, 3, MODEL, "interactive")], fleet, models, slos, budget)
    assert long.ttft_p50 == pytest.approx(0.6)
    # the second prompt arrives (0.205 s) while the first decodes: the next iteration (0.21-0.42 s) decodes
    # the first and prefills the second; the first's 4 tokens after its first span 3 × 0.01 + 0.21 s,
    # the second's TTFT is 0.215 s and its TPOT 0.01 s (p50/p90 interpolate between the two requests)
    two = [SimRequest(0.0, 80, 5, MODEL, "interactive"), SimRequest(0.205, 80, 5, MODEL, "interactive")]
    mixed = simulate(plan, two, fleet, models, slos, budget)
    first_tpot = (0.01 + 0.21 + 0.01 + 0.01) / 4
    assert mixed.tpot_p90 == pytest.approx(0.01 + 0.9 * (first_tpot - 0.01))
    assert mixed.ttft_p90 == pytest.approx(0.2 + 0.9 * 0.015)
    prefill_first = simulate(plan, two, fleet, models, slos, options())
    assert prefill_first.ttft_p90 == pytest.approx(mixed.ttft_p90, abs=0.02)
    with pytest.raises(ValueError, match="step_token_budget"):
        SimOptions(step_token_budget=-1)


def test_step_budget_hands_off_prefills_and_serves_a_pd_route(env) -> None:  # type: ignore[no-untyped-def]
    fleet, models, slos = env
    plan = plan_of({"p": ("prefill", 1), "d": ("decode", 1)}, Route(1.0, prefill_pool="p", decode_pool="d"))
    reqs = [SimRequest(0.1 * k, 400, 5, MODEL, "interactive") for k in range(4)]
    result = simulate(plan, reqs, fleet, models, slos, options(step_token_budget=512))
    assert result.num_requests == 4 and result.slo_attainment == 1.0 and result.disaggregated_fraction == 1.0
    assert result.ttft_p50 >= 0.2 + 0.1  # a prefill iteration and the transfer's latency at least
