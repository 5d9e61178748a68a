"""The planner loop: observe traffic, forecast, re-solve, publish the plan, drive the actuator.

Three tasks run while the service is started:

- leadership (every `lock_ttl_ms / 3`): acquire or renew the leader lock (Redis by default, or any
  `LeaderLock` such as a Kubernetes Lease); only the leader plans and actuates. Losing the lock
  stops both at the next tick; the lock is released on `stop()`.
- planning (every `tick_seconds`), as leader: read the traffic over `traffic_window_seconds` (mean
  rates and lengths, folded into the Holt forecaster) and over the peak's short window (one sample
  per tick for `peak.PeakTracker`), re-keyed to placement's class names (`DemandModel.class_of`);
  solve again when `interval_seconds` passed since the last solve, or the planning rates moved
  significantly since the last solve (see `forecast.significant_change`) and at least
  `min_solve_gap_seconds` passed. Demand per class = max(peak quantile, Holt forecast, the warm
  classes' `min_rate_per_s`) × `headroom`; its basis is recorded in the plan (`Plan.demand`).
  The solver runs in `asyncio.to_thread`
  with the running plan (for its churn penalty) — when the demand is infeasible (beyond the
  inventory), for the largest of `OVERLOAD_FRACTIONS` of it that is feasible, so an overload grows the
  fleet as far as it can; `PlanPolicy` decides whether the answer replaces the running plan; an
  accepted plan is published to Redis (`PlanStore`) and handed to actuation.
- actuation: applies the newest accepted plan's pool targets (coalescing plans that arrive while an
  apply runs), and re-applies every `reconcile_seconds` so that a crashed worker is replaced.

A planner that becomes leader adopts the plan in Redis (`Plan.from_dict`), so a takeover does not
restart the fleet from scratch. The plan published is `placement.plan.Plan.to_dict()`; actuation
targets every pool the planner ever planned, at 0 once a plan drops it (plans list open pools only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from common.errors import HeteroserveError, InfeasibleError
from control_plane.actuators.base import Actuator, PoolTarget
from control_plane.plan_store import PlanStore
from control_plane.planner.forecast import ForecastConfig, RateForecaster, significant_change
from control_plane.planner.leader import DEFAULT_LOCK_KEY, RedisLeaderLock
from control_plane.planner.metrics import PlannerMetrics
from control_plane.planner.peak import PeakConfig, PeakTracker
from control_plane.planner.policy import PlanPolicy
from control_plane.planner.types import DemandClass, PoolPlan, SolvedPlan, SolveFn, parse_document
from control_plane.traffic import ClassTraffic, TrafficConfig, TrafficReader

log = logging.getLogger(__name__)

# Fractions of an infeasible demand tried in turn (largest first) to find the biggest servable fleet.
# Down to a tenth: with peak sizing a burst can be several times what the inventory serves, and serving
# a part of it on the whole inventory beats keeping a plan sized for less.
OVERLOAD_FRACTIONS = (0.9, 0.75, 0.6, 0.45, 0.3, 0.2, 0.1)


_STOP_SECONDS = 5.0  # stop(): how long to keep cancelling a loop that does not end


class LeaderLock(Protocol):
    """What the planner needs of a leader lock: `RedisLeaderLock` here, or the Kubernetes Lease lock
    (`control_plane.actuators.leader.KubernetesLeaseLock`), which has the same methods."""

    async def try_acquire(self) -> bool: ...
    async def renew(self) -> bool: ...
    async def release(self) -> bool: ...


class DemandModel(Protocol):
    """How observed traffic becomes placement classes (`solver.PlanningInputs` is one)."""

    def class_of(self, name: str, input_tokens: float, output_tokens: float) -> str: ...
    def warm_demand(self) -> dict[str, DemandClass]: ...


@dataclass(frozen=True)
class PlannerConfig:
    planner_id: str
    interval_seconds: float = 30.0
    tick_seconds: float = 1.0
    min_solve_gap_seconds: float = 5.0
    traffic_window_seconds: float = 30.0
    headroom: float = 1.0
    scale_down_confirmations: int = 2
    scale_down_stabilization_seconds: float = 0.0
    reconcile_seconds: float = 10.0
    lock_ttl_ms: int = 3000
    lock_key: str = DEFAULT_LOCK_KEY
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    peak: PeakConfig = field(default_factory=PeakConfig)

    def __post_init__(self) -> None:
        for name in ("interval_seconds", "tick_seconds", "traffic_window_seconds", "reconcile_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.min_solve_gap_seconds < 0:
            raise ValueError(f"min_solve_gap_seconds must be >= 0, got {self.min_solve_gap_seconds}")
        if self.headroom < 1.0:
            raise ValueError(f"headroom must be >= 1, got {self.headroom}")
        if not self.planner_id:
            raise ValueError("planner_id must be non-empty")


@dataclass(frozen=True)
class PlanEvent:
    """One accepted plan, as kept in `PlannerService.events` (for the demo and tests)."""

    version: int
    at: float
    reason: str
    counts: Mapping[str, int]
    demand_rps: Mapping[str, float]


class PlannerService:
    """One planner replica. `start()` / `stop()` inside an event loop; `step()` is one planning tick."""

    def __init__(self, config: PlannerConfig, client: aioredis.Redis, traffic: TrafficConfig,
                 solve: SolveFn, metrics: PlannerMetrics, demand: DemandModel,
                 actuator: Actuator | None = None, lock: LeaderLock | None = None) -> None:
        self.config = config
        self._client = client
        self._reader = TrafficReader(traffic, client=client)
        self._store = PlanStore(client)
        self._lock: LeaderLock = lock or RedisLeaderLock(client, config.planner_id, key=config.lock_key,
                                                         ttl_ms=config.lock_ttl_ms)
        self._solve = solve
        self._demand_model = demand
        self._metrics = metrics
        self._actuator = actuator
        self._forecaster = RateForecaster(config.forecast)
        self._peaks = PeakTracker(config.peak)
        self._known_pools: dict[str, PoolPlan] = {}
        self._mean_rates: dict[str, float] = {}
        self._policy = PlanPolicy(config.scale_down_confirmations,
                                  scale_down_stabilization_seconds=config.scale_down_stabilization_seconds)
        self._lengths: dict[str, tuple[float, float]] = {
            n: (d.mean_input_tokens, d.mean_output_tokens) for n, d in demand.warm_demand().items()}
        self._histograms: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.is_leader = False
        self.running: SolvedPlan | None = None
        self.events: list[PlanEvent] = []
        self._planned_rates: dict[str, float] = {}
        self._last_solve = 0.0
        self._to_apply: SolvedPlan | None = None
        self._apply_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._leadership_loop(), name="planner-leadership"),
                       asyncio.create_task(self._planning_loop(), name="planner-planning"),
                       asyncio.create_task(self._actuation_loop(), name="planner-actuation")]

    async def stop(self) -> None:
        """Cancel the loops and release the lock (if held). Does not close the client or actuator.

        Bounded: a loop still running half a second after its cancellation (a cancellation lost inside
        a library call; seen once in the suite as a planner that went on solving for 300 s) is cancelled
        again, for up to `_STOP_SECONDS` in all; then it is logged and left behind."""
        tasks, self._tasks = self._tasks, []
        deadline = time.monotonic() + _STOP_SECONDS
        while tasks:
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=0.5)
            tasks = list(pending)
            if tasks and time.monotonic() > deadline:
                log.error("planner %s: loops %s ignored cancellation for %.0f s; leaving them",
                          self.config.planner_id, [t.get_name() for t in tasks], _STOP_SECONDS)
                break
        if self.is_leader:
            with contextlib.suppress(redis.RedisError):
                await self._lock.release()
        self._set_leader(False)

    # -- leadership ------------------------------------------------------------------------------
    async def _leadership_loop(self) -> None:
        while True:
            try:
                leads = await (self._lock.renew() if self.is_leader else self._lock.try_acquire())
            except redis.RedisError as exc:
                log.warning("leader lock unreachable: %s", exc)
                leads = False
            if leads and not self.is_leader:
                log.info("planner %s is now the leader", self.config.planner_id)
                await self._adopt_published_plan()
            elif not leads and self.is_leader:
                log.warning("planner %s lost the leadership", self.config.planner_id)
            self._set_leader(leads)
            await asyncio.sleep(self.config.lock_ttl_ms / 3000)

    def _set_leader(self, leads: bool) -> None:
        self.is_leader = leads
        self._metrics.is_leader.set(1 if leads else 0)

    async def _adopt_published_plan(self) -> None:
        record = await self._store.read()
        if record is not None and self.running is None:
            try:
                self.running = parse_document(record.plan)
            except HeteroserveError as exc:
                log.warning("cannot adopt the published plan v%d: %s", record.version, exc)
                return
            self._request_apply(self.running)

    # -- planning --------------------------------------------------------------------------------
    async def _planning_loop(self) -> None:
        while True:
            if self.is_leader:
                try:
                    await self.step()
                except (HeteroserveError, redis.RedisError) as exc:
                    log.warning("planning tick failed: %s", exc)
                except Exception:
                    log.exception("planning tick crashed; retrying next tick")
            await asyncio.sleep(self.config.tick_seconds)

    async def step(self, now: float | None = None) -> SolvedPlan | None:
        """Observe, and solve if due. Returns the plan accepted by this tick, or None."""
        now = time.monotonic() if now is None else now
        snapshot = await self._reader.snapshot(self.config.traffic_window_seconds)
        short = await self._reader.snapshot(self.config.peak.window_seconds)
        long_rates = self._rekey(snapshot.classes, keep_lengths=True)
        self._mean_rates = long_rates
        self._forecaster.observe(long_rates)
        self._peaks.observe(now, self._rekey(short.classes))
        rates = self._demand_rates()
        self._observe_metrics(snapshot.total_rate_per_s, snapshot.classes)
        due = self.running is None or now - self._last_solve >= self.config.interval_seconds
        changed = (now - self._last_solve >= self.config.min_solve_gap_seconds
                   and significant_change(self._planned_rates, rates, self.config.forecast))
        if not (due or changed):
            return None
        return await self._solve_and_publish(rates, now, "interval" if due else "traffic change")

    def _rekey(self, classes: Mapping[str, ClassTraffic], *, keep_lengths: bool = False) -> dict[str, float]:
        """Observed rates by placement class name; several observed names of one class add up (their
        lengths averaged by rate). With `keep_lengths`, the lengths and histograms are remembered."""
        rates: dict[str, float] = {}
        weighted: dict[str, tuple[float, float]] = {}
        for name, c in classes.items():
            key = self._demand_model.class_of(name, c.mean_input_tokens, c.mean_output_tokens)
            rates[key] = rates.get(key, 0.0) + c.arrival_rate_per_s
            w_in, w_out = weighted.get(key, (0.0, 0.0))
            weighted[key] = (w_in + c.arrival_rate_per_s * c.mean_input_tokens,
                             w_out + c.arrival_rate_per_s * c.mean_output_tokens)
            if keep_lengths:
                self._histograms[key] = (c.input_histogram, c.output_histogram)
        if keep_lengths:
            for key, rate in rates.items():
                if rate > 0:
                    self._lengths[key] = (weighted[key][0] / rate, weighted[key][1] / rate)
        return rates

    def _demand_rates(self) -> dict[str, float]:
        """max(peak quantile, Holt planning rate, warm minimum) per class, before headroom."""
        planning, peaks = self._forecaster.planning_rates(), self._peaks.peaks()
        warm = {n: d.rate_per_s for n, d in self._demand_model.warm_demand().items()}
        names = set(planning) | set(peaks) | set(warm)
        return {n: max(planning.get(n, 0.0), peaks.get(n, 0.0), warm.get(n, 0.0)) for n in names}

    def demand_basis(self, rates: Mapping[str, float], fraction: float) -> dict[str, Any]:
        """What `Plan.demand` records: the peak basis, the rates planned for (after headroom and any
        overload fraction) and the long-window mean rates observed."""
        return {**self._peaks.describe(), "headroom": self.config.headroom, "served_fraction": fraction,
                "rates": {n: round(r * self.config.headroom * fraction, 4) for n, r in sorted(rates.items())},
                "mean_rates": {n: round(r, 4) for n, r in sorted(self._mean_rates.items())}}

    def _demand(self, rates: Mapping[str, float]) -> list[DemandClass]:
        out = []
        for name in sorted(rates):
            mean_in, mean_out = self._lengths.get(name, (128.0, 64.0))
            hist_in, hist_out = self._histograms.get(name, ((), ()))
            out.append(DemandClass(name, rates[name] * self.config.headroom, mean_in, mean_out,
                                   hist_in, hist_out))
        return out

    async def _solve_and_publish(self, rates: dict[str, float], now: float,
                                 trigger: str) -> SolvedPlan | None:
        self._last_solve = now
        self._planned_rates = dict(rates)
        plan, served = await self._solve_best_effort(rates)
        decision = self._policy.decide(self.running, plan, now)
        if served < 1.0:
            trigger = f"{trigger}; overload: planned for {served:.0%} of the demand"
        if not decision.accept:
            log.info("solved (%s): %s, keeping plan", trigger, decision.reason)
            return None
        record = await self._store.publish(plan.plan.to_dict(), leader=self.config.planner_id,
                                           reason=f"{decision.reason} ({trigger})")
        log.info("plan v%d published (%s, %s): %s, $%.2f/h", record.version, decision.reason, trigger,
                 plan.counts(), plan.cost_per_hour)
        self.running = plan
        self.events.append(PlanEvent(record.version, time.time(), decision.reason, plan.counts(),
                                     {n: round(r, 3) for n, r in rates.items()}))
        self._observe_plan(plan, record.version)
        self._request_apply(plan)
        return plan

    async def _solve_best_effort(self, rates: dict[str, float]) -> tuple[SolvedPlan, float]:
        """Solve for the demand; if it is infeasible (more than the inventory can serve), solve for
        OVERLOAD_FRACTIONS of it in turn and return the first plan found with its fraction, so that an
        overload grows the fleet to what is possible instead of freezing it. Re-raises the original
        InfeasibleError when no fraction helps (a class no pool can serve at all)."""
        first_error: InfeasibleError | None = None
        for fraction in (1.0, *OVERLOAD_FRACTIONS):
            demand = self._demand({n: r * fraction for n, r in rates.items()})
            started = time.perf_counter()
            try:
                plan = await asyncio.to_thread(self._solve, demand, self.running)
                plan = SolvedPlan(replace(plan.plan, demand=self.demand_basis(rates, fraction)))
            except InfeasibleError as exc:
                self._metrics.solves.labels(status="infeasible").inc()
                first_error = first_error or exc
                continue
            except HeteroserveError as exc:
                self._metrics.solves.labels(status=type(exc).__name__.removesuffix("Error").lower()).inc()
                raise
            finally:
                self._metrics.solve_seconds.observe(time.perf_counter() - started)
            self._metrics.solves.labels(status=plan.status).inc()
            if fraction < 1.0:
                log.warning("demand exceeds what the fleet can serve (%s); planning for %.0f%% of it",
                            first_error, fraction * 100)
            return plan, fraction
        assert first_error is not None, "the loop either returns or records an error"
        raise first_error

    def _observe_metrics(self, total_rate: float, classes: Mapping[str, Any]) -> None:
        self._metrics.observed_rate.set(total_rate)
        n = sum(c.num_requests for c in classes.values())
        if n:
            met = sum((c.slo_attainment or 0.0) * c.num_requests for c in classes.values())
            self._metrics.slo_attainment.set(met / n)

    def _observe_plan(self, plan: SolvedPlan, version: int) -> None:
        self._metrics.plans_published.inc()
        self._metrics.plan_version.set(version)
        self._metrics.plan_cost.labels(plan="current").set(plan.cost_per_hour)
        for name, cost in plan.baselines.items():
            self._metrics.plan_cost.labels(plan=name).set(cost)
        for pool in plan.pools:
            self._metrics.desired_instances.labels(pool.name, pool.node_type, pool.role).set(pool.count)

    # -- actuation -------------------------------------------------------------------------------
    def targets(self, plan: SolvedPlan) -> list[PoolTarget]:
        """The plan's pools, plus every pool an earlier plan opened at 0 replicas (plans list only
        open pools; an actuator scales only the pools it is given)."""
        pools = {p.name: p for p in plan.pools}
        self._known_pools.update(pools)
        return [PoolTarget(pool=p.name, node_type=p.node_type, role=p.role, device=p.device,
                           model=p.model, replicas=pools[name].count if name in pools else 0)
                for name, p in sorted(self._known_pools.items())]

    def _request_apply(self, plan: SolvedPlan) -> None:
        self._to_apply = plan
        self._apply_wanted.set()

    async def _actuation_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a cancellation that
            # races with the event being set, and stop() would then wait for this task forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.reconcile_seconds):
                    await self._apply_wanted.wait()
            self._apply_wanted.clear()
            plan = self._to_apply or self.running
            if plan is None or self._actuator is None or not self.is_leader:
                continue
            try:
                result = await self._actuator.apply(self.targets(plan))
                if result.changed:
                    log.info("actuator applied: %s", [(c.pool, c.from_replicas, c.to_replicas)
                                                      for c in result.changes])
                actual = await self._actuator.current()
                for pool in plan.pools:
                    self._metrics.actual_instances.labels(pool.name, pool.node_type, pool.role).set(
                        actual.get(pool.name, 0))
            except HeteroserveError as exc:
                log.warning("actuation failed, will retry: %s", exc)
            except Exception:
                log.exception("actuation crashed; will retry")
