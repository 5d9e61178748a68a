"""The simulation loop: arrivals → routing by the plan → instances → P/D hand-off → metrics.

Events (time-ordered heap, ties broken by insertion order, so runs are deterministic for a seed):
`arrive` (route the request: class by `plan.classify`, route drawn by share with the seeded RNG,
instance = least loaded of the pool), `done` (an instance's iteration ended: collect finished requests,
start the next iteration), `kv` (a prefilled request's KV reached its decode instance). KV transfers
from one prefill instance are serialised on its NIC: transfer = bytes / min(NIC of both ends) + latency.
TTFT of a disaggregated request counts until its KV is on the decode instance (as the ILP does).
Calibrated from measurements (`SimOptions.steps`, `SimOptions.transfer`): an instance of a node type
and role found in `steps` takes its step times and KV capacity from there (e.g. `MeasuredSteps.fit`
of a measured profile) instead of the roofline; a prefill pool's node type found in `transfer` moves
KV in `TransferPoint.seconds_for(bytes)` (its measured latency included) instead of bytes / NIC.
A request meets its SLO when TTFT ≤ ttft and TPOT = (finish − first token) / (output − 1) ≤ tpot.

Two behaviours of the live system, found by `bench fidelity` (both off by default):
- `pd_min_input_tokens`: a request drawn onto a P/D route with a shorter prompt runs on the decode
  pool alone (prefill and decode there), as the gateway does below `pd_min_uncached_tokens`;
- `cores`: the instances share that many cores (workers co-located on one machine, each pinned to one
  core): instance k of the plan (pools in plan order, replicas in order) runs on core k mod `cores`,
  and an iteration started while n instances of its core are busy (itself included) takes n × its step
  time (processor sharing, fixed at the iteration's start). 0 = every instance has its own device.
With `cores`, `core_slowdown` (measured on the co-located set: `bench fidelity`'s concurrent probe)
says how much slower an iteration runs while other cores are busy too: entry k − 1 is the factor when k
cores (its own included) have a busy instance at the iteration's start (beyond the tuple, its last
entry). Cores are not independent devices: the processes that are not workers (a gateway, a load
generator, anything else on the machine) run on a core no worker uses while one is free, and on the
workers' cores once every core is busy; caches and memory bandwidth are shared as well. () = 1.0.
A third, `first_token_overhead_seconds`, is the serving path's fixed cost before a request reaches a
worker (gateway: auth, tokenize, route, the first RPC): the request enters the cluster that long after
its arrival, which TTFT counts from; it occupies no instance.
A fourth, `wake` (a `WakeCost`, measured by `heteroserve profile` as the profile's `idle` entry): an
instance that has been idle for at least `idle_seconds` takes `seconds` longer for its next iteration,
and its decode steps started within `warm_seconds` of that take `decode_scale` × their time (a worker
woken from idle is slower than one kept busy: measured on the live worker, the excess of a lone
request's TTFT and TPOT over its profile grows with the idle time before it; see docs/benchmarks.md,
bench fidelity). Instances start idle.
Per-pool throughput counts the requests that passed through the pool (prefill and decode pools both
count a P/D request) over the simulated span.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from common.stats import percentile
from placement.catalog import Catalog
from placement.models import ModelSpec
from placement.perf.roofline import TRANSFER_LATENCY_SECONDS, kv_transfer_bytes
from placement.perf.steps import StepTimes
from placement.plan import Plan
from placement.profile_file import TransferPoint, WakeCost
from placement.simulator.instances import Instance, RequestState
from placement.trace import Trace
from placement.workload import SLOClass


@dataclass(frozen=True)
class SimRequest:
    arrival: float
    input_tokens: int
    output_tokens: int
    model: str
    slo: str


@dataclass(frozen=True)
class SimOptions:
    seed: int = 0
    chunk_tokens: int = 2048
    max_batch: int = 512
    steps: Mapping[tuple[str, str], StepTimes] = field(default_factory=dict)  # (node type, role)
    transfer: Mapping[str, TransferPoint] = field(default_factory=dict)  # prefill node type → path
    pd_min_input_tokens: int = 0  # shorter prompts on a P/D route run on the decode pool alone
    cores: int = 0  # instances share this many cores, pinned round robin (0: one device each)
    first_token_overhead_seconds: float = 0.0  # serving path before a worker sees the request
    wake: Mapping[str, WakeCost] = field(default_factory=dict)  # node type → cost of leaving idle
    core_slowdown: tuple[float, ...] = ()  # factor by number of busy cores (1, 2, …); needs `cores`
    step_token_budget: int = 0  # > 0: decode-first mixed iterations of this many tokens (instances.py)

    def __post_init__(self) -> None:
        for name in ("pd_min_input_tokens", "cores", "first_token_overhead_seconds", "step_token_budget"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.core_slowdown and (not self.cores or min(self.core_slowdown) <= 0):
            raise ValueError(f"core_slowdown: needs cores > 0 and factors > 0, got {self.core_slowdown} "
                             f"with cores {self.cores}")


@dataclass(frozen=True)
class SimResult:
    """Times in seconds; utilisation = busy time / simulated span, per pool (mean over instances).
    Percentiles are `common.stats.percentile` (linear interpolation); 0.0 when the sample is empty
    (no requests, or no request with more than one output token for TPOT)."""

    num_requests: int
    slo_attainment: float
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    tpot_p50: float
    tpot_p90: float
    tpot_p99: float
    duration_seconds: float
    cost_per_hour: float
    cost_usd: float
    utilization: Mapping[str, float] = field(default_factory=dict)
    disaggregated_fraction: float = 0.0
    throughput: Mapping[str, float] = field(default_factory=dict)  # pool → requests/s through it


def requests_from_trace(trace: Trace, model: str, slo: str) -> tuple[SimRequest, ...]:
    return tuple(
        SimRequest(a, i, o, model, slo)
        for a, i, o in zip(trace.arrivals, trace.input_tokens, trace.output_tokens, strict=True)
    )


def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p90, p99 by `common.stats.percentile`; 0.0 for an empty sample (SimResult's contract)."""
    p50, p90, p99 = (percentile(values, q) for q in (0.5, 0.9, 0.99))
    return p50 or 0.0, p90 or 0.0, p99 or 0.0


class _Sim:
    def __init__(
        self,
        plan: Plan,
        fleet: Catalog,
        models: Mapping[str, ModelSpec],
        slos: Mapping[str, SLOClass],
        opts: SimOptions,
    ) -> None:
        self.plan, self.slos, self.rng = plan, slos, random.Random(opts.seed)
        self.transfer, self.pd_min_input_tokens = opts.transfer, opts.pd_min_input_tokens
        self.overhead = opts.first_token_overhead_seconds
        self.wake = opts.wake
        self.core_slowdown = opts.core_slowdown
        self.through: dict[str, int] = {}
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.end = 0.0
        self.nic_free: dict[int, float] = {}
        self.decode_pool: dict[int, str] = {}
        self.pools: dict[str, list[Instance]] = {}
        for p in plan.pools:
            self.pools[p.name] = [
                Instance(
                    p.name,
                    p.role,
                    fleet[p.node_type],
                    models[p.model],
                    opts.chunk_tokens,
                    opts.max_batch,
                    self._prefilled,
                    steps_model=opts.steps.get((p.node_type, p.role)),
                    step_budget=opts.step_token_budget,
                )
                for _ in range(p.count)
            ]
        everyone = [i for insts in self.pools.values() for i in insts]
        self.core_of = {id(i): k % opts.cores for k, i in enumerate(everyone)} if opts.cores else {}
        self.on_core: dict[int, list[Instance]] = {}
        for i in everyone:
            if self.core_of:
                self.on_core.setdefault(self.core_of[id(i)], []).append(i)

    def push(self, t: float, kind: str, item: object) -> None:
        heapq.heappush(self.events, (t, self.seq, kind, item))
        self.seq += 1

    def kick(self, inst: Instance, now: float) -> None:
        if inst.busy:
            return
        duration = inst.start()
        if duration is None:
            inst.idle_since = min(inst.idle_since, now)
            return
        if self.core_of:  # processor sharing with the busy instances pinned to the same core
            duration *= sum(1 for i in self.on_core[self.core_of[id(inst)]] if i.busy)
            if self.core_slowdown:
                busy_cores = sum(1 for on in self.on_core.values() if any(i.busy for i in on))
                duration *= self.core_slowdown[min(busy_cores, len(self.core_slowdown)) - 1]
        wake = self.wake.get(inst.node.name)
        if wake is not None:
            extra = 0.0
            if now - inst.idle_since >= wake.idle_seconds:
                extra, inst.warm_until = wake.seconds, now + wake.warm_seconds
            elif inst.decoding and now < inst.warm_until:
                extra = duration * (wake.decode_scale - 1.0)
            duration += extra
            inst.busy_seconds += extra
        inst.idle_since = float("inf")  # working: not idle until an iteration finds nothing to do
        self.push(now + duration, "done", inst)

    def route(self, r: RequestState, req: SimRequest, now: float) -> None:
        name = self.plan.classify(req.input_tokens, req.output_tokens, req.slo, req.model)
        routes = self.plan.routes(name)
        route = self.rng.choices(routes, weights=[x.share for x in routes])[0]
        alone = route.disaggregated and req.input_tokens < self.pd_min_input_tokens
        for pool in (route.decode_pool,) if alone else route.pools:
            self.through[str(pool)] = self.through.get(str(pool), 0) + 1
        if alone:
            r.route = "decode_alone"
            inst = min(self.pools[str(route.decode_pool)], key=lambda i: i.load)
            inst.local.append(r)
            self.kick(inst, now)
            return
        r.route = "pd" if route.disaggregated else "colocated"
        self.decode_pool[r.rid] = route.decode_pool or ""
        inst = min(self.pools[route.pools[0]], key=lambda i: i.load)
        inst.waiting.append(r)
        self.kick(inst, now)

    def _prefilled(self, inst: Instance, r: RequestState, now: float) -> None:
        target = min(self.pools[self.decode_pool[r.rid]], key=lambda i: i.load)
        start = max(now, self.nic_free.get(id(inst), 0.0))
        measured = self.transfer.get(inst.node.name)
        if measured is not None:
            seconds = measured.seconds_for(kv_transfer_bytes(inst.model, r.input_tokens))
            end, latency = start + seconds - measured.latency_seconds, measured.latency_seconds
        else:
            bandwidth = min(inst.node.network_bytes_per_second, target.node.network_bytes_per_second)
            end = start + kv_transfer_bytes(inst.model, r.input_tokens) / bandwidth
            latency = TRANSFER_LATENCY_SECONDS
        self.nic_free[id(inst)] = end
        target.inflight += 1
        self.push(end + latency, "kv", (target, r))

    def run(self, requests: Sequence[SimRequest]) -> list[RequestState]:
        states = []
        for rid, q in enumerate(requests):
            slo = self.slos[q.slo]
            states.append(
                RequestState(rid, q.arrival, q.input_tokens, q.output_tokens,
                             slo.ttft_seconds, slo.tpot_seconds)
            )
            self.push(q.arrival + self.overhead, "arrive", rid)
        while self.events:
            now, _, kind, item = heapq.heappop(self.events)
            if kind == "arrive":
                rid = cast(int, item)
                self.route(states[rid], requests[rid], now)
            elif kind == "kv":
                target, r = cast(tuple[Instance, RequestState], item)
                r.first_token = now
                target.inflight -= 1
                target.waiting.append(r)
                self.kick(target, now)
            else:
                inst = cast(Instance, item)
                inst.finish(now)
                self.kick(inst, now)
        self.end = now if requests else 0.0
        return states


def simulate(
    plan: Plan,
    requests: Sequence[SimRequest],
    fleet: Catalog,
    models: Mapping[str, ModelSpec],
    slos: Mapping[str, SLOClass],
    options: SimOptions | None = None,
) -> SimResult:
    """Replay `requests` against `plan`. Deterministic for a given `options.seed`. Pure."""
    sim = _Sim(plan, fleet, models, slos, options or SimOptions())
    states = sim.run(requests)
    ttfts = [r.first_token - r.arrival for r in states if r.first_token is not None]
    tpots = [
        (r.finish - r.first_token) / (r.output_tokens - 1)
        for r in states
        if r.finish is not None and r.first_token is not None and r.output_tokens > 1
    ]
    met = sum(
        1
        for r in states
        if r.first_token is not None
        and r.finish is not None
        and r.first_token - r.arrival <= r.ttft_slo
        and (r.output_tokens <= 1 or (r.finish - r.first_token) / (r.output_tokens - 1) <= r.tpot_slo)
    )
    span = max(sim.end - (requests[0].arrival if requests else 0.0), 1e-9)
    util = {
        name: sum(i.busy_seconds for i in insts) / (len(insts) * span)
        for name, insts in sim.pools.items()
        if insts
    }
    return SimResult(
        len(states),
        met / len(states) if states else 1.0,
        *_quantiles(ttfts),
        *_quantiles(tpots),
        span,
        plan.cost_per_hour,
        plan.cost_per_hour * span / 3600,
        util,
        sum(1 for r in states if r.route == "pd") / len(states) if states else 0.0,
        {name: n / span for name, n in sorted(sim.through.items())},
    )
