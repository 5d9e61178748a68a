"""The planner loop against a real Redis: step response, hysteresis, leader-only actuation."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.errors import InfeasibleError
from control_plane.actuators.base import ApplyResult, PoolChange, PoolTarget
from control_plane.plan_store import PlanStore
from control_plane.planner.forecast import ForecastConfig
from control_plane.planner.metrics import PlannerMetrics
from control_plane.planner.policy import PlanPolicy
from control_plane.planner.service import PlannerConfig, PlannerService
from control_plane.planner.types import DemandClass, PoolPlan, SolvedPlan
from control_plane.traffic import TrafficConfig, TrafficRecorder

RATE_PER_WORKER = 1.0


def capacity_solver(demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
    """Plans ceil(rate / 1 rps) colocated CPU workers (a stand-in with an exact, known answer)."""
    count = max(1, math.ceil(sum(d.rate_per_s for d in demand) / RATE_PER_WORKER - 1e-9))
    pool = PoolPlan("cpu-colocated", "cpu-local", "colocated", "cpu", count)
    return SolvedPlan((pool,), cost_per_hour=0.1 * count, baselines={"single-type": 0.1 * count},
                      status="optimal", document={"pools": [{"name": pool.name, "count": count}]})


def plan(count: int) -> SolvedPlan:
    return capacity_solver([DemandClass("c", float(count), 10, 10)], None)


class RecordingActuator:
    """An in-memory Actuator that records what it was asked to apply."""

    def __init__(self) -> None:
        self.replicas: dict[str, int] = {}
        self.applied: list[dict[str, int]] = []

    async def apply(self, targets: Sequence[PoolTarget]) -> ApplyResult:
        changes = tuple(PoolChange(t.pool, self.replicas.get(t.pool, 0), t.replicas) for t in targets
                        if self.replicas.get(t.pool, 0) != t.replicas)
        self.replicas.update({t.pool: t.replicas for t in targets})
        self.applied.append(dict(self.replicas))
        return ApplyResult(changes)

    async def current(self) -> dict[str, int]:
        return dict(self.replicas)

    async def close(self) -> None:
        pass


def test_policy_scales_up_at_once_and_down_after_confirmations() -> None:
    policy = PlanPolicy(scale_down_confirmations=2)
    assert policy.decide(None, plan(2)).reason == "initial"
    assert policy.decide(plan(2), plan(3)).reason == "scale-up"
    assert policy.decide(plan(3), plan(3)).reason == "unchanged"
    first = policy.decide(plan(3), plan(2))
    assert not first.accept and first.reason == "scale-down pending 1/2"
    assert policy.decide(plan(3), plan(2)).reason == "scale-down"
    assert not policy.decide(plan(2), plan(1)).accept  # the streak restarted


def make_service(redis_url: str, client: aioredis.Redis, planner_id: str, interval: float,
                 actuator: RecordingActuator | None = None) -> PlannerService:
    config = PlannerConfig(planner_id=planner_id, model="tiny", interval_seconds=interval, tick_seconds=0.1,
                           min_solve_gap_seconds=0.0, traffic_window_seconds=2.0, headroom=1.0,
                           scale_down_confirmations=2, reconcile_seconds=0.5, lock_ttl_ms=300,
                           min_rate_per_s={"chat": 0.5},
                           forecast=ForecastConfig(alpha=1.0, beta=0.1, horizon=0.0))
    traffic = TrafficConfig(redis_url=redis_url, bucket_seconds=1)
    return PlannerService(config, client, traffic, capacity_solver, PlannerMetrics(CollectorRegistry()),
                          actuator=actuator)


class Feeder:
    """Records `rate` chat requests per second into the traffic statistics, in 0.1 s steps."""

    def __init__(self, recorder: TrafficRecorder) -> None:
        self.recorder = recorder
        self.carry = 0.0

    async def feed(self, rate: float, seconds: float) -> None:
        for _ in range(round(seconds * 10)):
            self.carry += rate / 10
            while self.carry >= 1:
                self.recorder.record("chat", 100, 20, 0.1, 0.01, True)
                self.carry -= 1
            await asyncio.sleep(0.1)


async def test_planner_reacts_to_a_load_step_within_two_intervals(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    recorder = TrafficRecorder(TrafficConfig(redis_url=redis_url, bucket_seconds=1,
                                             flush_interval_seconds=0.1))
    actuator = RecordingActuator()
    interval = 1.0
    service = make_service(redis_url, client, "p1", interval, actuator)
    service.start()
    try:
        feeder = Feeder(recorder)
        await feeder.feed(1.5, 3.0)
        assert service.running is not None and service.running.counts()["cpu-colocated"] == 2
        step_at = asyncio.get_running_loop().time()
        reacted_at = None
        while asyncio.get_running_loop().time() - step_at < 6:
            await feeder.feed(4.5, 0.2)
            if service.running.counts()["cpu-colocated"] >= 4:
                reacted_at = asyncio.get_running_loop().time()
                break
        assert reacted_at is not None, f"no scale-up; events: {service.events}"
        # the traffic window (2 s) must see the step first; then at most two intervals
        assert reacted_at - step_at <= 2.0 + 2 * interval + 0.5
        await asyncio.sleep(0.7)
        assert actuator.replicas["cpu-colocated"] >= 4
        record = await PlanStore(client).read()
        assert record is not None and record.leader == "p1"
        assert record.plan["pools"][0]["count"] == service.running.counts()["cpu-colocated"]
        reasons = [e.reason for e in service.events]
        assert reasons[0] == "initial" and "scale-up" in reasons
    finally:
        await service.stop()
        recorder.close()
        await client.aclose()


async def test_only_the_leader_publishes_and_a_follower_takes_over(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    a_act, b_act = RecordingActuator(), RecordingActuator()
    a = make_service(redis_url, client, "a", 0.5, a_act)
    b = make_service(redis_url, client, "b", 0.5, b_act)
    a.start()
    await asyncio.sleep(0.3)
    b.start()
    try:
        await asyncio.sleep(1.0)
        assert a.is_leader and not b.is_leader
        assert a.events and not b.events and not b_act.applied
        await a.stop()  # releases the lock
        await asyncio.sleep(1.0)
        assert b.is_leader
        assert b.events
        record = await PlanStore(client).read()
        assert record is not None and record.leader == "b"
    finally:
        await a.stop()
        await b.stop()
        await client.aclose()


def test_policy_publishes_a_reweight_only_beyond_the_threshold() -> None:
    def routed(share: float) -> SolvedPlan:
        base = plan(2)
        doc = {"routing": {"long": {"cpu-colocated": share, "cpu-prefill": 1 - share}}}
        return SolvedPlan(base.pools, base.cost_per_hour, base.baselines, "optimal", doc)

    policy = PlanPolicy(reweight_threshold=0.1)
    assert policy.decide(routed(0.40), routed(0.45)).reason == "unchanged"
    assert policy.decide(routed(0.40), routed(0.60)).reason == "reweight"


def test_policy_scale_down_waits_for_the_stabilization_window() -> None:
    policy = PlanPolicy(scale_down_confirmations=2, scale_down_stabilization_seconds=20.0)
    assert not policy.decide(plan(3), plan(2), now=100.0).accept
    assert not policy.decide(plan(3), plan(2), now=110.0).accept  # two proposals, only 10 s
    assert policy.decide(plan(3), plan(2), now=120.0).reason == "scale-down"
    assert policy.decide(plan(2), plan(3), now=121.0).reason == "scale-up"


async def test_a_step_publishes_and_exports_the_planner_metrics(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    registry = CollectorRegistry()
    config = PlannerConfig(planner_id="p", model="tiny", min_rate_per_s={"chat": 1.5}, headroom=1.0)
    service = PlannerService(config, client, TrafficConfig(redis_url=redis_url), capacity_solver,
                             PlannerMetrics(registry))
    try:
        accepted = await service.step(now=1000.0)
        assert accepted is not None and accepted.counts() == {"cpu-colocated": 2}
        assert await service.step(now=1001.0) is None  # not due, no change
        value = registry.get_sample_value
        assert value("heteroserve_planner_plan_cost_dollars_per_hour", {"plan": "current"}) == 0.2
        assert value("heteroserve_planner_plan_cost_dollars_per_hour", {"plan": "single-type"}) == 0.2
        assert value("heteroserve_planner_desired_instances",
                     {"pool": "cpu-colocated", "node_type": "cpu-local", "role": "colocated"}) == 2
        assert value("heteroserve_planner_solves_total", {"status": "optimal"}) == 1
        assert value("heteroserve_planner_plan_version") == 1
        assert value("heteroserve_planner_solve_seconds_count") == 1
        names = {m.name for m in registry.collect()}
        assert names == {f"heteroserve_planner_{n}" for n in (
            "plan_cost_dollars_per_hour", "desired_instances", "actual_instances", "solve_seconds", "solves",
            "plans_published", "plan_version", "slo_attainment_ratio", "observed_rate_requests_per_second",
            "is_leader")}
    finally:
        await client.aclose()


def capped_solver(demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
    """capacity_solver on a fleet of at most 4 workers."""
    plan = capacity_solver(demand, running)
    if plan.counts()["cpu-colocated"] > 4:
        raise InfeasibleError("class chat can be served only in part: inventory of cpu-local (4 nodes)",
                              constraint="inventory", request_class="chat")
    return plan


async def test_an_overload_grows_the_fleet_to_the_inventory(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    registry = CollectorRegistry()
    config = PlannerConfig(planner_id="p", model="tiny", min_rate_per_s={"chat": 6.0}, headroom=1.0)
    service = PlannerService(config, client, TrafficConfig(redis_url=redis_url), capped_solver,
                             PlannerMetrics(registry))
    try:
        accepted = await service.step(now=1000.0)
        assert accepted is not None and accepted.counts() == {"cpu-colocated": 4}  # 6 × 0.6 = 3.6 → 4
        record = await PlanStore(client).read()
        assert record is not None and "overload: planned for 60% of the demand" in record.reason
        assert registry.get_sample_value("heteroserve_planner_solves_total", {"status": "infeasible"}) == 3
    finally:
        await client.aclose()


async def test_a_class_no_pool_can_serve_is_reported_not_hidden(redis_url: str) -> None:
    def never(demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
        raise InfeasibleError("class chat cannot be served by any pool: tpot", constraint="tpot")

    client = aioredis.Redis.from_url(redis_url)
    config = PlannerConfig(planner_id="p", model="tiny", min_rate_per_s={"chat": 1.0})
    service = PlannerService(config, client, TrafficConfig(redis_url=redis_url), never,
                             PlannerMetrics(CollectorRegistry()))
    try:
        with pytest.raises(InfeasibleError, match="tpot"):
            await service.step(now=1000.0)
        assert await PlanStore(client).read() is None
    finally:
        await client.aclose()
