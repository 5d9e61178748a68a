"""The simulator: deterministic for a seed, meets SLOs on a planned rate, exercises the P/D hand-off."""

from __future__ import annotations

import pytest

from placement.catalog import Catalog
from placement.compile import compile_problem
from placement.models import ModelSpec
from placement.planning import make_plan
from placement.simulator import SimOptions, SimRequest, simulate
from placement.workload import SLOClass


def test_deterministic_with_seed(setup, models, slos) -> None:  # type: ignore[no-untyped-def]
    plan, requests, fleet = setup
    a = simulate(plan, requests, fleet, models, slos, SimOptions(seed=7))
    b = simulate(plan, requests, fleet, models, slos, SimOptions(seed=7))
    assert a == b
    c = simulate(plan, requests, fleet, models, slos, SimOptions(seed=8))
    assert c.num_requests == a.num_requests


def test_planned_rate_meets_slo_and_uses_pd(setup, models, slos) -> None:  # type: ignore[no-untyped-def]
    plan, requests, fleet = setup
    result = simulate(plan, requests, fleet, models, slos, SimOptions(seed=1))
    assert result.num_requests == len(requests)
    assert result.slo_attainment >= 0.99
    assert result.disaggregated_fraction > 0.5
    assert 0 < result.ttft_p50 <= result.ttft_p90 <= result.ttft_p99
    assert 0 < result.tpot_p50 <= result.tpot_p99 <= slos["interactive"].tpot_seconds
    assert all(0 < u <= 1.0 + 1e-9 for u in result.utilization.values())
    assert result.cost_usd == pytest.approx(plan.cost_per_hour * result.duration_seconds / 3600)


def test_overload_breaks_slo(setup, models, slos) -> None:  # type: ignore[no-untyped-def]
    plan, requests, fleet = setup
    squeezed = tuple(
        SimRequest(r.arrival / 4, r.input_tokens, r.output_tokens, r.model, r.slo) for r in requests
    )
    assert simulate(plan, squeezed, fleet, models, slos).slo_attainment < 0.9


def test_csd_decode_pool_serves_the_batch_class(
    catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]
) -> None:
    import random

    from tests.placement.test_compile import CLASSIFIER, cheap_csd, conv_classes

    fleet = Catalog.of([catalog["L4"], catalog["A10G"], cheap_csd()])
    classes = conv_classes("llama3-8b", "batch", 20.0)
    plan = make_plan(compile_problem(fleet, models, classes, slos), CLASSIFIER)
    csd = [p.name for p in plan.pools if p.node_type == "csd-test"]
    assert csd and all(p.endswith(":decode") for p in csd)
    rng, t, requests = random.Random(0), 0.0, []
    edges_in, edges_out = CLASSIFIER.input_edges, CLASSIFIER.output_edges
    for _ in range(600):
        cls = rng.choices(classes, weights=[c.rate for c in classes])[0]
        i, j = cls.bucket
        t += rng.expovariate(20.0)
        requests.append(
            SimRequest(
                t,
                rng.randint(edges_in[i] + 1, edges_in[i + 1]),
                rng.randint(edges_out[j] + 1, edges_out[j + 1]),
                "llama3-8b",
                "batch",
            )
        )
    result = simulate(plan, requests, fleet, models, slos, SimOptions(seed=0))
    assert result.slo_attainment >= 0.99
    assert all(result.utilization[name] > 0 for name in csd)
