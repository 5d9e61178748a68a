"""The simulator: deterministic for a seed, meets SLOs on a planned rate, exercises the P/D hand-off."""

from __future__ import annotations

import pytest

from placement.catalog import Catalog
from placement.compile import compile_problem
from placement.models import ModelSpec
from placement.plan import Classifier
from placement.planning import make_plan
from placement.simulator import SimOptions, SimRequest, simulate
from placement.trace import Trace, with_poisson_arrivals
from placement.workload import Buckets, SLOClass, classes_from_lengths


def lengths(n: int) -> list[tuple[int, int]]:
    return [(200 + (i * 7919) % 1800, 20 + (i * 104729) % 400) for i in range(n)]


@pytest.fixture(scope="module")
def setup(catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]):  # type: ignore[no-untyped-def]
    fleet = catalog.subset(["H100x8", "A100-80Gx8", "L4x8"])
    buckets = Buckets((0, 512, 1024, 2048), (0, 128, 256, 512))
    pairs = lengths(1500)
    rate = 40.0
    classes = classes_from_lengths("llama2-70b", "interactive", pairs, len(pairs) / rate, buckets)
    plan = make_plan(
        compile_problem(fleet, models, classes, slos),
        Classifier(buckets.input_edges, buckets.output_edges, ("interactive",), "interactive"),
    )
    trace = with_poisson_arrivals(
        Trace(tuple(0.0 for _ in pairs), tuple(a for a, _ in pairs), tuple(b for _, b in pairs)), rate, seed=3
    )
    requests = tuple(
        SimRequest(a, i, o, "llama2-70b", "interactive")
        for a, i, o in zip(trace.arrivals, trace.input_tokens, trace.output_tokens, strict=True)
    )
    return plan, requests, fleet


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
