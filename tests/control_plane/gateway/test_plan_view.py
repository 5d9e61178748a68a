"""`PlanView`: the gateway reads `Plan.from_dict` and nothing else; a refused document keeps the last
good plan and says why; routes keep the plan's P/D pairings; the runtime counts refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from control_plane.gateway.config import GatewayConfig, ModelSpec
from control_plane.gateway.plan import PlanView
from control_plane.gateway.runtime import GatewayRuntime
from control_plane.orchestrator.routes import PlannedRoute
from control_plane.plan_store import PlanRecord
from placement.plan import Route
from tests.control_plane.gateway.plans import document

POOLS = {"co": "colocated", "pf-a": "prefill", "pf-b": "prefill", "dc-a": "decode", "dc-b": "decode"}
CLASSES = {"tiny/interactive/i1o0": [Route(0.2, pool="co"),
                                     Route(0.5, prefill_pool="pf-a", decode_pool="dc-b"),
                                     Route(0.3, prefill_pool="pf-b", decode_pool="dc-a")],
           "tiny/batch/i0o0": [Route(1.0, pool="co")]}
GOOD = document(POOLS, CLASSES, version=3)


def test_routes_keep_the_plans_pairings() -> None:
    view = PlanView()
    assert view.update(3, GOOD) is None and view.version == 3
    route = view.route_for(100, 16, "interactive", "tiny")
    assert route.request_class == "tiny/interactive/i1o0" and route.slo_class == "interactive"
    assert route.routes == (PlannedRoute(0.2, pool="co"),
                            PlannedRoute(0.5, prefill_pool="pf-a", decode_pool="dc-b"),
                            PlannedRoute(0.3, prefill_pool="pf-b", decode_pool="dc-a"))
    assert [r.name for r in route.routes] == ["co", "pf-a>dc-b", "pf-b>dc-a"]
    assert route.routes[1].pool_roles() == (("pf-a", "prefill"), ("dc-b", "decode"))
    assert view.route_for(100, 16, "interactive", "tiny") is route  # built once per class and plan
    # a bucket the plan saw no traffic for: the model's rate-weighted routes (both classes rate 1)
    unseen = view.route_for(10, 16, "interactive", "tiny")
    assert unseen.request_class == "tiny/interactive/i0o0"
    assert {r.name: r.share for r in unseen.routes} == pytest.approx(
        {"co": 0.6, "pf-a>dc-b": 0.25, "pf-b>dc-a": 0.15})
    # a model the plan does not serve: no routes (any worker of that model)
    assert view.route_for(100, 16, "batch", "other").routes == ()
    assert [c.request_class for c in view.classes()] == ["tiny/interactive/i1o0", "tiny/batch/i0o0"]


def test_no_plan_means_no_routes() -> None:
    view = PlanView()
    route = view.route_for(10, 10, "")
    assert route.request_class == "default" and route.routes == () and view.classes() == []


@pytest.mark.parametrize(("bad", "reason", "message"), [
    ({**GOOD, "schema": 2}, "schema", "unsupported plan schema 2"),
    ({"pools": [{"name": "co", "role": "colocated"}], "routing": {"chat": {"co": 1.0}}}, "schema",
     "unsupported plan schema None"),  # the planner's old dict format is not read any more
    ({**GOOD, "classes": [{"name": "x", "model": "tiny", "slo": "interactive", "bucket": [0, 0],
                           "rate": 1.0, "routes": [{"share": 1.0}]}]}, "malformed", "either pool"),
    ({k: v for k, v in GOOD.items() if k != "classifier"}, "malformed", "classifier"),
])
def test_refused_plan_keeps_the_last_good_one(bad: dict[str, object], reason: str, message: str) -> None:
    view = PlanView()
    view.update(3, GOOD)
    before = view.route_for(100, 16, "interactive", "tiny")
    assert view.update(4, bad) == reason
    assert view.last_error is not None and message in view.last_error and "version 4" in view.last_error
    assert view.version == 3 and view.route_for(100, 16, "interactive", "tiny") is before
    assert view.update(5, GOOD) is None and view.last_error is None and view.version == 5


async def test_runtime_counts_refusals_and_resets_shares(caplog: pytest.LogCaptureFixture,
                                                         tiny_model_dir: Path) -> None:
    runtime = GatewayRuntime(GatewayConfig(models=(ModelSpec("tiny", tiny_model_dir),), cluster_token="t",
                                           allow_anonymous=True))
    await runtime._on_plan(PlanRecord(version=3, plan=GOOD, published_at=0.0, leader="t", reason="r"))
    runtime.orchestrator.shares.record(runtime.plan.route_for(100, 16, "interactive", "tiny"),
                                       PlannedRoute(0.2, pool="co"))
    with caplog.at_level(logging.ERROR):
        await runtime._on_plan(PlanRecord(version=4, plan={**GOOD, "schema": 9}, published_at=0.0,
                                          leader="t", reason="r"))
    assert "refusing plan version 4" in caplog.text and "still routing by plan version 3" in caplog.text
    text = generate_latest(runtime.registry).decode()
    assert 'heteroserve_gateway_plan_rejected_total{reason="schema"} 1.0' in text
    assert "heteroserve_gateway_plan_version 3.0" in text
    assert 'heteroserve_gateway_served_share{pool="co",role="colocated",slo_class="interactive"} 1.0' in text
    assert 'heteroserve_gateway_planned_share{pool="pf-a",role="prefill",slo_class="interactive"} 0.5' in text
    routing = runtime.routing()
    assert routing["plan_version"] == 3 and "schema" in routing["plan_error"]
    rows = {(c["request_class"], c["route"]): c for c in routing["classes"]}
    assert rows[("tiny/interactive/i1o0", "co")]["served_share"] == 1.0
    assert rows[("tiny/interactive/i1o0", "pf-a>dc-b")]["planned_share"] == 0.5
    assert rows[("tiny/interactive/i1o0", "pf-a>dc-b")]["served_share"] == 0.0
    assert rows[("tiny/batch/i0o0", "co")]["served_share"] is None
