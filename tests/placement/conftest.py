"""Small shared inputs for placement tests: the shipped catalogs, a few SLO classes, and `setup`: a plan
for llama2-70b at 40 req/s with its Poisson-arrival requests (the simulator tests)."""

from __future__ import annotations

import pytest

from placement.catalog import Catalog, load_catalog
from placement.compile import compile_problem
from placement.models import ModelSpec, load_models
from placement.plan import Classifier
from placement.planning import make_plan
from placement.simulator import SimRequest
from placement.trace import Trace, with_poisson_arrivals
from placement.workload import Buckets, SLOClass, classes_from_lengths
from tests.placement.simulated import lengths


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def models() -> dict[str, ModelSpec]:
    return load_models()


@pytest.fixture(scope="session")
def slos() -> dict[str, SLOClass]:
    return {
        "interactive": SLOClass("interactive", 2.0, 0.1),
        "batch": SLOClass("batch", 60.0, 2.0, latency_tolerant=True),
    }


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
