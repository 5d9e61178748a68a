"""ProfileSolver on the real placement ILP (HiGHS): exact counts, costs, baselines, routing stability."""

from __future__ import annotations

import pytest

from common.errors import InfeasibleError
from control_plane.planner.profile_solver import ProfiledClass, ProfiledPool, ProfileSolver, ProfileSpec
from control_plane.planner.types import DemandClass

SPEC = ProfileSpec(
    model="tiny",
    pools=(ProfiledPool("cpu-colocated", "cpu-local", "colocated", "cpu", 0.10, {"chat": 1.5, "long": 0.3}),
           ProfiledPool("cpu-prefill", "cpu-local", "prefill", "cpu", 0.10, {"long": 2.0}),
           ProfiledPool("csd-decode", "csd-local", "decode", "csd", 0.05, {"long": 1.2})),
    classes=(ProfiledClass("chat", max_input_tokens=256), ProfiledClass("long", max_input_tokens=4096)),
    inventory={"cpu-local": 6, "csd-local": 1}, churn_penalty=0.03)


def demand(chat: float, long: float) -> list[DemandClass]:
    return [DemandClass("chat", chat, 100, 20), DemandClass("long", long, 600, 50)]


def test_cheapest_fleet_uses_prefill_and_csd_decode_for_long_prompts() -> None:
    plan = ProfileSolver(SPEC)(demand(1.8, 0.6), None)
    assert plan.counts() == {"cpu-colocated": 2, "cpu-prefill": 1, "csd-decode": 1}
    assert plan.cost_per_hour == pytest.approx(0.35)
    assert plan.baselines == {"colocated-only": pytest.approx(0.40), "single-type": pytest.approx(0.40)}
    assert plan.status == "optimal"
    routing = plan.document["routing"]
    assert routing["chat"] == {"cpu-colocated": 1.0}
    long = routing["long"]
    assert long.get("cpu-colocated", 0) + long["cpu-prefill"] == pytest.approx(1.0)
    assert long["csd-decode"] == pytest.approx(long["cpu-prefill"])
    assert [c["name"] for c in plan.document["classes"]] == ["chat", "long"]


def test_a_doubled_chat_rate_adds_one_colocated_worker() -> None:
    solver = ProfileSolver(SPEC)
    base = solver(demand(1.8, 0.6), None)
    step = solver(demand(3.6, 0.6), base)
    assert step.counts()["cpu-colocated"] == 3 and step.cost_per_hour == pytest.approx(0.45)


def test_routing_is_kept_while_it_still_fits() -> None:
    solver = ProfileSolver(SPEC)
    first = solver(demand(1.8, 0.6), None)
    second = solver(demand(1.7, 0.55), first)
    assert second.counts() == first.counts()
    assert second.document["routing"] == first.document["routing"]
    assert not solver.routing_fits(first.document["routing"], {"chat": 3.5, "long": 0.6}, first.counts())


def test_unservable_demand_names_the_binding_constraint() -> None:
    with pytest.raises(InfeasibleError) as info:
        ProfileSolver(SPEC)(demand(20.0, 0.6), None)
    assert "inventory" in str(info.value)


def test_an_idle_cluster_keeps_a_worker_for_every_class() -> None:
    plan = ProfileSolver(SPEC)([], None)
    assert sum(plan.counts().values()) >= 1
    routing = plan.document["routing"]
    assert set(routing) == {"chat", "long"}
    served = [sum(v for p, v in r.items() if p != "csd-decode") for r in routing.values()]
    assert served == [pytest.approx(1.0), pytest.approx(1.0)]
