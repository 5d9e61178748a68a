"""Plans compiled from the roofline: P/D chosen when it pays, refused when the transfer breaks TTFT,
CSD only for eligible classes, and every plan passes the independent checker (also under hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import ConfigError
from placement.catalog import Catalog, NodeType
from placement.check import check_plan
from placement.compile import CompileOptions, compile_problem
from placement.ilp.problem import SolverOptions
from placement.models import ModelSpec
from placement.plan import Classifier, Plan
from placement.planning import make_plan
from placement.workload import Buckets, RequestClass, SLOClass, classes_from_distribution

BUCKETS = Buckets((0, 512, 2048, 8192, 32768), (0, 128, 512, 2048))
CLASSIFIER = Classifier(BUCKETS.input_edges, BUCKETS.output_edges, ("interactive", "batch"), "interactive")


def conv_classes(model: str, slo: str, rate: float) -> tuple[RequestClass, ...]:
    return classes_from_distribution(
        model, slo, rate, [[0.2, 0.1, 0.0], [0.3, 0.3, 0.0], [0.05, 0.05, 0.0], [0.0, 0.0, 0.0]], BUCKETS
    )


def plan_and_check(
    fleet: Catalog,
    models: dict[str, ModelSpec],
    classes: tuple[RequestClass, ...],
    slos: dict[str, SLOClass],
    inventory: dict[str, int] | None = None,
    options: CompileOptions | None = None,
) -> Plan:
    options = options or CompileOptions()
    problem = compile_problem(fleet, models, classes, slos, inventory or {}, options)
    plan = make_plan(problem, CLASSIFIER, SolverOptions(time_limit_seconds=20))
    assert check_plan(plan, fleet, models, classes, slos, inventory or {}, options) == []
    return plan


def test_disaggregation_wins_on_a_70b_fleet(
    catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]
) -> None:
    fleet = catalog.subset(["H100x8", "A100-80Gx8", "L4x8"])
    plan = plan_and_check(fleet, models, conv_classes("llama2-70b", "interactive", 50.0), slos)
    colocated = plan.baseline("colocated_only")
    assert colocated is not None and colocated.cost_per_hour is not None
    assert plan.cost_per_hour < colocated.cost_per_hour
    assert any(p.role == "prefill" for p in plan.pools) and any(p.role == "decode" for p in plan.pools)


def test_disaggregation_refused_when_transfer_breaks_ttft(
    catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]
) -> None:
    # 10 Mbit/s NICs: moving a 1,000-token Llama-70B prompt's KV (~330 MB) takes minutes, far over TTFT 2 s
    slow = Catalog.of(replace(catalog[n], network_gbps=0.01) for n in ("H100x8", "A100-80Gx8", "L4x8"))
    classes = conv_classes("llama2-70b", "interactive", 50.0)
    problem = compile_problem(slow, models, classes, slos)
    assert problem.disaggregated == ()
    assert any(r.startswith("ttft") and "transfer" in r for r in problem.exclusions[classes[0].name])
    plan = plan_and_check(slow, models, classes, slos)
    assert all(p.role == "colocated" for p in plan.pools)
    assert all(not r.disaggregated for c in plan.classes for r in c.routes)


def test_short_prompts_get_no_pd_route_below_the_gateway_threshold(
    catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]
) -> None:
    # The gateway runs prompts under its P/D threshold on the decode worker alone: no P/D option for
    # classes whose mean prompt is shorter, every other class keeps its P/D options.
    fleet = catalog.subset(["H100x8", "A100-80Gx8", "L4x8"])
    classes = conv_classes("llama2-70b", "interactive", 50.0)
    threshold = 600
    every = compile_problem(fleet, models, classes, slos)
    gated = compile_problem(fleet, models, classes, slos,
                            options=CompileOptions(pd_min_input_tokens=threshold))
    long_ones = {c for c, cls in enumerate(classes) if cls.input_tokens >= threshold}
    assert {d.demand for d in every.disaggregated} > long_ones != set()
    assert {d.demand for d in gated.disaggregated} == long_ones
    assert gated.colocated == every.colocated
    with pytest.raises(ValueError, match="pd_min_input_tokens"):
        CompileOptions(pd_min_input_tokens=-1)


def cheap_csd() -> NodeType:
    return NodeType(
        "csd-test",
        "csd",
        1,
        512,
        300,
        {"fp16": 8.0},
        100,
        0.15,
        kv_memory_gb=30000,
        kv_bandwidth_gbs=400,
        compute_efficiency=0.5,
        bandwidth_efficiency=0.8,
    )


def test_csd_decodes_only_eligible_classes(
    catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]
) -> None:
    fleet = Catalog.of([catalog["L4"], catalog["A10G"], cheap_csd()])
    classes = conv_classes("llama3-8b", "interactive", 20.0) + conv_classes("llama3-8b", "batch", 20.0)
    plan = plan_and_check(fleet, models, classes, slos)
    csd_pools = {p.name for p in plan.pools if p.node_type == "csd-test"}
    assert csd_pools, "a cheap CSD node should take the batch decode"
    assert all(p.role == "decode" for p in plan.pools if p.node_type == "csd-test")
    for c in plan.classes:
        uses_csd = any(r.decode_pool in csd_pools for r in c.routes)
        assert not uses_csd or c.slo == "batch", f"{c.name} decodes on CSD"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(0.5, 40.0),
    batch_rate=st.floats(0.0, 20.0),
    types=st.sets(st.sampled_from(["H100", "A100-80G", "A10G", "L4", "T4", "cpu-64c"]), min_size=1),
    inventory_cap=st.one_of(st.none(), st.integers(2, 12)),
    disagg=st.booleans(),
)
def test_every_plan_passes_the_independent_checker(
    catalog: Catalog,
    models: dict[str, ModelSpec],
    slos: dict[str, SLOClass],
    rate: float,
    batch_rate: float,
    types: set[str],
    inventory_cap: int | None,
    disagg: bool,
) -> None:
    from common.errors import InfeasibleError

    fleet = Catalog.of([catalog[t] for t in sorted(types)] + [cheap_csd()])
    classes = conv_classes("llama2-7b", "interactive", rate)
    if batch_rate > 0:
        classes += conv_classes("llama2-7b", "batch", batch_rate)
    inventory = {t: inventory_cap for t in types} if inventory_cap else {}
    try:
        plan_and_check(fleet, models, classes, slos, inventory, CompileOptions(allow_disaggregation=disagg))
    except InfeasibleError as exc:
        assert exc.request_class or exc.constraint  # explained, never a bare failure


def test_plan_json_round_trip_and_classify(
    catalog: Catalog, models: dict[str, ModelSpec], slos: dict[str, SLOClass]
) -> None:
    import json

    fleet = catalog.subset(["A100-80G", "A10G", "L4"])
    plan = plan_and_check(fleet, models, conv_classes("llama2-7b", "interactive", 10.0), slos)
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert Plan.from_json(plan.to_json()) == plan
    with pytest.raises(ConfigError):
        Plan.from_json(b"{not json")
    with pytest.raises(ConfigError):
        Plan.from_dict({**plan.to_dict(), "schema": 99})
    name = plan.classify(700, 200, "interactive")
    assert name == "llama2-7b/interactive/i1o1"
    assert plan.classify(700, 200, "unknown-slo") == name  # unknown SLO → default
    assert plan.classify(10**6, 10**6) == "llama2-7b/interactive/i3o2"  # clipped to last bucket
    assert sum(r.share for r in plan.routes(name)) == pytest.approx(1.0)
    fallback = plan.routes("llama2-7b/interactive/i3o2")  # no traffic planned for it
    assert fallback and sum(r.share for r in fallback) == pytest.approx(1.0)
    assert all(plan.pool(p).count > 0 for r in fallback for p in r.pools)
