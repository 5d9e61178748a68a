"""The planner loop against a real Redis and the real placement solver on a measured profile: one plan
document (`Plan.to_dict()`), the role mix following traffic, the peak basis, hysteresis, leadership."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.errors import InfeasibleError
from control_plane.actuators.base import ApplyResult, PoolChange, PoolTarget
from control_plane.plan_store import PlanStore
from control_plane.planner.forecast import ForecastConfig
from control_plane.planner.metrics import PlannerMetrics
from control_plane.planner.peak import PeakConfig, PeakTracker
from control_plane.planner.policy import PlanPolicy
from control_plane.planner.service import PlannerConfig, PlannerService
from control_plane.planner.types import DemandClass, SolvedPlan
from control_plane.traffic import TrafficConfig, TrafficRecorder
from placement.plan import Plan
from tests.control_plane.planner.fleet import plan_of, planning_inputs, solver

LONG = "tiny/interactive/i4o0"  # 600-token prompts, 20-token answers, under the default SLO class


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


def config(planner_id: str = "p", interval: float = 60.0, **kw: object) -> PlannerConfig:
    return PlannerConfig(planner_id=planner_id, interval_seconds=interval, tick_seconds=0.1,
                         min_solve_gap_seconds=0.0, traffic_window_seconds=10.0, scale_down_confirmations=2,
                         reconcile_seconds=0.5, lock_ttl_ms=300,
                         forecast=ForecastConfig(alpha=1.0, beta=0.1, horizon=0.0),
                         peak=PeakConfig(quantile=0.95, window_seconds=2.0, horizon_seconds=10.0), **kw)  # type: ignore[arg-type]


def service(redis_url: str, client: aioredis.Redis, cfg: PlannerConfig, *,
            registry: CollectorRegistry | None = None, actuator: RecordingActuator | None = None,
            inventory: dict[str, int] | None = None) -> PlannerService:
    traffic = TrafficConfig(redis_url=redis_url, bucket_seconds=1)
    metrics = PlannerMetrics(registry or CollectorRegistry())
    return PlannerService(cfg, client, traffic, solver(inventory), metrics, planning_inputs(inventory),
                          actuator=actuator)


def record(redis_url: str, n: int, input_tokens: int = 600, name: str = "long") -> None:
    recorder = TrafficRecorder(TrafficConfig(redis_url=redis_url, bucket_seconds=1))
    try:
        for _ in range(n):
            recorder.record(name, input_tokens, 20, 0.1, 0.01, True)
    finally:
        recorder.close()  # flushes


def roles(plan: SolvedPlan) -> set[str]:
    return {p.role for p in plan.pools}


def test_policy_scales_up_at_once_and_down_after_confirmations() -> None:
    policy = PlanPolicy(scale_down_confirmations=2)
    assert policy.decide(None, plan_of({"a": 2})).reason == "initial"
    assert policy.decide(plan_of({"a": 2}), plan_of({"a": 3})).reason == "scale-up"
    assert policy.decide(plan_of({"a": 3}), plan_of({"a": 3})).reason == "unchanged"
    first = policy.decide(plan_of({"a": 3}), plan_of({"a": 2}))
    assert not first.accept and first.reason == "scale-down pending 1/2"
    assert policy.decide(plan_of({"a": 3}), plan_of({"a": 2})).reason == "scale-down"
    assert not policy.decide(plan_of({"a": 2}), plan_of({"a": 1})).accept  # the streak restarted


def test_policy_publishes_a_reweight_only_beyond_the_threshold() -> None:
    def routed(share: float) -> SolvedPlan:
        return plan_of({"a": 1, "b": 1}, {"a": share, "b": 1 - share})

    policy = PlanPolicy(reweight_threshold=0.1)
    assert policy.decide(routed(0.40), routed(0.45)).reason == "unchanged"
    assert policy.decide(routed(0.40), routed(0.60)).reason == "reweight"


def test_policy_scale_down_waits_for_the_stabilization_window() -> None:
    policy = PlanPolicy(scale_down_confirmations=2, scale_down_stabilization_seconds=20.0)
    assert not policy.decide(plan_of({"a": 3}), plan_of({"a": 2}), now=100.0).accept
    assert not policy.decide(plan_of({"a": 3}), plan_of({"a": 2}), now=110.0).accept  # only 10 s
    assert policy.decide(plan_of({"a": 3}), plan_of({"a": 2}), now=120.0).reason == "scale-down"
    assert policy.decide(plan_of({"a": 2}), plan_of({"a": 3}), now=121.0).reason == "scale-up"


def test_peak_is_the_stated_quantile_of_the_short_window_samples_over_the_horizon() -> None:
    tracker = PeakTracker(PeakConfig(quantile=0.95, window_seconds=1.0, horizon_seconds=19.0))
    for t in range(20):
        tracker.observe(float(t), {"c": float(t + 1)})  # 1 .. 20 req/s
    assert tracker.peaks() == {"c": pytest.approx(19.05)}  # rank 0.95 · 19 = 18.05 → 19 + 0.05
    tracker.observe(40.0, {})  # every old sample left the horizon; the class counts 0 now
    assert tracker.peaks() == {"c": 0.0}
    with pytest.raises(ValueError, match="quantile"):
        PeakConfig(quantile=1.5)


async def test_step_publishes_a_plan_whose_role_mix_follows_traffic(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    planner = service(redis_url, client, config())
    try:
        record(redis_url, 1)
        quiet = await planner.step(now=1000.0)
        assert quiet is not None and roles(quiet) == {"colocated"}, quiet.counts()
        record(redis_url, 40)  # a burst of long prompts: ≥ 13 req/s over the 2 s peak window
        busy = await planner.step(now=1001.0)
        assert busy is not None, planner.events
        assert {"prefill", "decode"} <= roles(busy), busy.counts()
        assert any(p.node_type == "csd-local" and p.role == "decode" for p in busy.pools)

        stored = await PlanStore(client).read()
        assert stored is not None and stored.version == 2
        plan = Plan.from_dict(stored.plan)  # the one plan document
        assert stored.plan["schema"] == 1 and plan.counts() == busy.counts()
        assert all(p.device in ("cpu", "csd") for p in plan.pools)
        routes = plan.routes(LONG)
        assert any(r.disaggregated for r in routes) and sum(r.share for r in routes) == pytest.approx(1)
        assert LONG in {c.name for c in plan.classes}, [c.name for c in plan.classes]
        long_class = next(c for c in plan.classes if c.name == LONG)
        assert (long_class.ttft_seconds, long_class.tpot_seconds) == (1.0, 0.1)
        demand = plan.demand
        assert demand is not None and demand["basis"] == "peak" and demand["quantile"] == 0.95
        assert (demand["window_s"], demand["horizon_s"]) == (2.0, 10.0)
        # sized for the peak of the short window, well above the 10 s mean
        assert demand["rates"][LONG] > 2 * demand["mean_rates"][LONG] > 0
    finally:
        await client.aclose()


async def test_the_recorded_rate_is_the_peak_quantile_after_the_burst_fades(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    planner = service(redis_url, client, config())
    try:
        record(redis_url, 30)
        await planner.step(now=2000.0)
        peak_after_burst = planner._peaks.peaks()[LONG]
        for t in (2000.5, 2001.0):
            await planner.step(now=t)
        peaks = planner._peaks.peaks()
        assert peaks[LONG] >= peak_after_burst * 0.5  # a few ticks later the p95 still holds the burst
        basis = planner.demand_basis(planner._demand_rates(), 1.0)
        holt = planner._forecaster.planning_rates()[LONG]
        assert basis["rates"][LONG] == pytest.approx(max(peaks[LONG], holt), abs=1e-3)
    finally:
        await client.aclose()


async def test_a_step_exports_the_planner_metrics_and_the_baselines(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    registry = CollectorRegistry()
    planner = service(redis_url, client, config(), registry=registry)
    try:
        accepted = await planner.step(now=1000.0)
        assert accepted is not None and accepted.counts() == {"cpu-local-colocated": 1}
        assert await planner.step(now=1001.0) is None  # not due, no change
        value = registry.get_sample_value
        assert value("heteroserve_planner_plan_cost_dollars_per_hour", {"plan": "current"}) == 0.1
        assert value("heteroserve_planner_plan_cost_dollars_per_hour", {"plan": "colocated_only"}) == 0.1
        assert value("heteroserve_planner_desired_instances",
                     {"pool": "cpu-local-colocated", "node_type": "cpu-local", "role": "colocated"}) == 1
        assert value("heteroserve_planner_solves_total", {"status": "optimal"}) == 1
        assert value("heteroserve_planner_plan_version") == 1
    finally:
        await client.aclose()


async def test_a_dropped_pool_is_scaled_to_zero(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    planner = service(redis_url, client, config())
    try:
        targets = planner.targets(plan_of({"a": 2, "b": 1}))
        assert {t.pool: t.replicas for t in targets} == {"a": 2, "b": 1}
        targets = planner.targets(plan_of({"a": 3}))
        assert {t.pool: t.replicas for t in targets} == {"a": 3, "b": 0}
    finally:
        await client.aclose()


async def test_an_overload_grows_the_fleet_to_the_inventory(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    registry = CollectorRegistry()
    planner = service(redis_url, client, config(), registry=registry,
                      inventory={"cpu-local": 2, "csd-local": 0})
    try:
        record(redis_url, 60, input_tokens=150, name="interactive")
        accepted = await planner.step(now=1000.0)
        assert accepted is not None and sum(accepted.counts().values()) == 2
        stored = await PlanStore(client).read()
        assert stored is not None and "overload: planned for" in stored.reason
        assert stored.plan["demand"]["served_fraction"] < 1
        infeasible = registry.get_sample_value("heteroserve_planner_solves_total", {"status": "infeasible"})
        assert (infeasible or 0) >= 1
    finally:
        await client.aclose()


async def test_a_class_no_pool_can_serve_is_reported_not_hidden(redis_url: str) -> None:
    def never(demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
        raise InfeasibleError("class tiny/interactive/i2o0 cannot be served by any pool: tpot",
                              constraint="tpot")

    client = aioredis.Redis.from_url(redis_url)
    planner = PlannerService(config(), client, TrafficConfig(redis_url=redis_url), never,
                             PlannerMetrics(CollectorRegistry()), planning_inputs())
    try:
        with pytest.raises(InfeasibleError, match="tpot"):
            await planner.step(now=1000.0)
        assert await PlanStore(client).read() is None
    finally:
        await client.aclose()


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll `predicate` every 0.1 s until it holds or `timeout` passes (solves run in a thread and the
    machine is shared: wall times vary, the outcome must not)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_only_the_leader_publishes_and_a_follower_takes_over(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    a_act, b_act = RecordingActuator(), RecordingActuator()
    a = service(redis_url, client, config("a", 0.5), actuator=a_act)
    b = service(redis_url, client, config("b", 0.5), actuator=b_act)
    a.start()
    await asyncio.sleep(0.3)
    b.start()
    try:
        assert await eventually(lambda: a_act.replicas == {"cpu-local-colocated": 1}), a.events
        assert a.is_leader and not b.is_leader
        assert a.events and not b.events and not b_act.applied
        await a.stop()  # releases the lock
        # b leads, adopts the published plan and applies it
        assert await eventually(lambda: b.is_leader and b_act.replicas == {"cpu-local-colocated": 1})
        assert b.running is not None
        stored = await PlanStore(client).read()
        assert stored is not None and stored.leader in ("a", "b")
    finally:
        await a.stop()
        await b.stop()
        await client.aclose()


async def test_stop_cancels_again_a_loop_that_swallowed_its_cancellation(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    svc = service(redis_url, client, config("s"))
    cancels = 0

    async def stubborn() -> None:  # a loop whose first cancellation is lost, as inside a library call
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancels += 1
                if cancels >= 2:
                    raise

    svc._tasks = [asyncio.create_task(stubborn())]
    try:
        await asyncio.wait_for(svc.stop(), 5)  # before the fix: stop() waited for the loop forever
        assert cancels == 2 and not svc._tasks
    finally:
        await client.aclose()
