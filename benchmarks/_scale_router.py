"""`bench scale`, router half: the gateway's routing decision on synthetic state at 1,000 workers.

State (seed 0), built through the real code:
- registry: `num_workers` `common.registry.WorkerRecord`s (one model, 8 pools, colocated, CPU), each
  turned into the router's `WorkerState` the way the gateway's cluster view does (record fields plus
  the worker's last stats: running 0–31, waiting 0–3, drawn at random);
- index: `cache.prefix_index.PrefixIndex` fed with `KVEvent`s of 64 hashes ("stored", tier "memory"):
  16 system prompts of 8 blocks, each held by the workers i with i mod 16 = s, and then each worker's
  own chains of 32 blocks until the index holds `num_blocks` blocks in all.
Memory: the process's RSS before the first event and after the last (after `gc.collect()`), divided
by the blocks held: what the index costs, whatever it keeps per block.

Decision (timed per request, `time.perf_counter_ns`, wall clock): what the gateway's orchestrator
runs per request (`GatewayDecision`): the prefix source's match (`IndexPrefixSource`: the index walk)
merged with the routed-prefix table, the route step (`RouteChooser` over the plan's 8 pools), then
`Router.route` restricted to the chosen pool (filters, scorers, picker), over one `WorkerTable` whose
loads move in place as requests are routed and finish, as the gateway's `ClusterView.table()` keeps
it. A request: system prompt s, then 32 blocks of one chain of a worker of group s, then 8 blocks
nobody holds (48 blocks, 768 tokens). The table is built once per membership change, not per
decision; that cost is reported apart (`worker_table_build_*_ms`). The same decisions' thread CPU
time (`time.thread_time_ns`) is reported too, and, to tell the code's cost from the machine's, how many
decisions a garbage collection or an involuntary context switch (the kernel gave the core to another
process) fell into, with the wall p99 of the others. The target is on the wall clock of all of them.
"""

from __future__ import annotations

import gc
import os
import random
import resource
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from cache.events import KVEvent
from cache.hashing import BlockHash
from cache.prefix_index import PrefixIndex
from common.registry import WorkerRecord
from common.stats import percentile
from control_plane.orchestrator.prefix import IndexPrefixSource
from control_plane.orchestrator.routed_prefixes import RoutedPrefixes, merge
from control_plane.orchestrator.routes import ClassRoute, PlannedRoute, RouteChooser
from control_plane.router import (
    InflightTracker,
    RouteDecision,
    Router,
    RouteRequest,
    WorkerState,
    WorkerTable,
)
from control_plane.router.split import RouteSplitter

GROUPS, SYSTEM_BLOCKS, CHAIN_BLOCKS, EVENT_HASHES, NEW_BLOCKS = 16, 8, 32, 64, 8
POOLS = tuple(f"pool-{k}" for k in range(8))


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def worker_states(num_workers: int, rng: random.Random) -> list[WorkerState]:
    states = []
    for i in range(num_workers):
        r = WorkerRecord(worker_id=f"w{i:04d}", address=f"10.{i // 250}.{i % 250}.1:50051",
                         node_type="cpu-64c", device="cpu", role="colocated", model="m",
                         pool=POOLS[i % len(POOLS)], kv_blocks=65_536, max_num_seqs=64, block_size=16,
                         started_at=0.0)
        states.append(WorkerState(worker_id=r.worker_id, address=r.address, model=r.model, role=r.role,
                                  pool=r.pool, node_type=r.node_type, device=r.device, healthy=True,
                                  draining=r.draining, max_concurrency=r.max_num_seqs,
                                  num_running=rng.randrange(32), num_waiting=rng.randrange(4)))
    return states


class SyntheticIndex:
    """The index and the chains it holds: `system[s]`, and `chains[w]` = the chain starts of worker w."""

    def __init__(self, num_workers: int, num_blocks: int, seed: int = 0) -> None:
        self.index = PrefixIndex()
        self.num_workers = num_workers
        self._rand = random.Random(seed).randbytes
        self.system = [self._hashes(SYSTEM_BLOCKS) for _ in range(GROUPS)]
        self.chains: list[list[tuple[BlockHash, ...]]] = [[] for _ in range(num_workers)]
        self.num_blocks = num_blocks

    def _hashes(self, n: int) -> tuple[BlockHash, ...]:
        raw = self._rand(16 * n)
        return tuple(BlockHash(raw[16 * k:16 * k + 16]) for k in range(n))

    def fill(self) -> dict[str, Any]:
        """Feed every event; returns blocks held, seconds, and the RSS growth per block."""
        gc.collect()
        before, started = rss_bytes(), time.perf_counter()
        for w in range(self.num_workers):
            self.index.apply(KVEvent(f"w{w:04d}", "memory", "stored", self.system[w % GROUPS]))
        events = max(1, -(-(self.num_blocks - len(self.index)) // (self.num_workers * EVENT_HASHES)))
        for w in range(self.num_workers):
            worker_id = f"w{w:04d}"
            for _ in range(events):  # ceil: at least `num_blocks` in all
                hashes = self._hashes(EVENT_HASHES)
                self.index.apply(KVEvent(worker_id, "memory", "stored", hashes))
                if len(self.chains[w]) < 4:  # a few chains per worker are enough for the requests
                    self.chains[w] += [hashes[:CHAIN_BLOCKS], hashes[CHAIN_BLOCKS:]]
        seconds = time.perf_counter() - started
        gc.collect()
        blocks = len(self.index)
        return {"index_blocks": blocks, "index_fill_seconds": round(seconds, 1),
                "index_rss_bytes": rss_bytes() - before,
                "index_bytes_per_block": round((rss_bytes() - before) / blocks, 1),
                "index_memory_method": "RSS delta (/proc/self/statm) over the fill, after gc.collect()"}

    def prompt(self, rng: random.Random) -> tuple[BlockHash, ...]:
        w = rng.randrange(self.num_workers)
        return self.system[w % GROUPS] + rng.choice(self.chains[w]) + self._hashes(NEW_BLOCKS)


def plan_route(pools: tuple[str, ...] = POOLS) -> ClassRoute:
    """The plan's routes for the one request class: an equal share on each colocated pool."""
    return ClassRoute("m/chat/i2o1", "chat", tuple(PlannedRoute(1.0 / len(pools), pool=p) for p in pools))


class GatewayDecision:
    """One routing decision exactly as the gateway's orchestrator makes it, on the real parts: the
    prefix source's match merged with the routed-prefix table, the route step (`RouteChooser`, smooth
    weighted round robin over the plan's shares), then `Router.route` restricted to the chosen pool,
    over one `WorkerTable` whose loads move in place as requests are routed and finish (the
    `InflightTracker` listener the gateway's `ClusterView` registers; `IN_FLIGHT` requests in flight).
    The router holds the same tracker, as the gateway's runtime attaches it, so the default
    `load_signal` ("dispatch") reads the requests in flight per worker at each decision."""

    IN_FLIGHT = 256

    def __init__(self, state: SyntheticIndex, workers: list[WorkerState]) -> None:
        self.source = IndexPrefixSource(lambda: state.index)
        self.routed = RoutedPrefixes()
        self.inflight = InflightTracker()
        self.router = Router(inflight=self.inflight)  # as the gateway attaches it: load_signal "dispatch"
        self.routes = RouteChooser(RouteSplitter(self.router.config.route_share_epsilon,
                                                 self.router.config.route_share_window))
        self.table = WorkerTable.build(workers)
        self.inflight.subscribe(lambda worker_id, _at, delta: self.table.add_load(worker_id, delta))
        self.route = plan_route()
        self._open: deque[tuple[str, str]] = deque()
        self._n = 0

    def decide(self, hashes: tuple[BlockHash, ...]) -> RouteDecision:
        match = merge(self.source.match(hashes), self.routed.match(hashes))
        chosen = self.routes.choose(self.route, "m", self.table, match)
        assert chosen is not None, "every planned pool has live workers"
        request = RouteRequest(model="m", request_class=self.route.request_class,
                               num_prompt_tokens=16 * len(hashes), pools=frozenset({chosen[0].pool}))
        decision = self.router.route(request, self.table, match)
        worker_id, self._n = decision.worker.worker_id, self._n + 1
        self.inflight.routed(worker_id, f"r{self._n}")
        self.routed.record(worker_id, hashes)
        self._open.append((worker_id, f"r{self._n}"))
        if len(self._open) > self.IN_FLIGHT:
            self.inflight.finished(*self._open.popleft())
        return decision


def _preemptions() -> int:
    """Involuntary context switches of this thread so far (the kernel took the core away)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def time_decisions(state: SyntheticIndex, workers: list[WorkerState], requests: int,
                   seed: int = 0) -> dict[str, Any]:
    """p50 / p99 of the gateway's decision time (`GatewayDecision.decide`), in milliseconds, on the
    wall clock and as the thread's CPU time; how many decisions a garbage collection or a preemption
    (involuntary context switch) fell into, and the wall p99 of the decisions neither touched (what
    the code costs on a core of its own); the cost of building the table once per membership."""
    rng = random.Random(seed)
    decide = GatewayDecision(state, workers)
    gc_ns: list[tuple[int, int]] = []
    gc_started = [0]

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter_ns()
        else:
            gc_ns.append((gc_started[0], time.perf_counter_ns()))

    wall: list[float] = []
    cpu: list[float] = []
    clean: list[float] = []
    preempted = collected = 0
    reasons: Counter[str] = Counter()
    gc.callbacks.append(on_gc)
    try:
        for i in range(requests + 200):  # the first 200 warm the caches and are not counted
            hashes = state.prompt(rng)
            gcs, switches = len(gc_ns), _preemptions()
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            decision = decide.decide(hashes)
            t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
            if i < 200:
                continue
            was_preempted, had_gc = _preemptions() > switches, len(gc_ns) > gcs
            preempted += was_preempted
            collected += had_gc
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            if not (was_preempted or had_gc):
                clean.append(t1 - t0)
            reasons[decision.reason] += 1
    finally:
        gc.callbacks.remove(on_gc)
    build_ns: list[float] = []
    for _ in range(20):
        t0 = time.perf_counter_ns()
        WorkerTable.build(workers)
        build_ns.append(time.perf_counter_ns() - t0)

    def ms(values: list[float], q: float) -> float | None:
        p = percentile(values, q)
        return None if p is None else round(p / 1e6, 4)

    return {"route_decision_p50_ms": ms(wall, 0.5), "route_decision_p99_ms": ms(wall, 0.99),
            "route_decision_cpu_p50_ms": ms(cpu, 0.5), "route_decision_cpu_p99_ms": ms(cpu, 0.99),
            "route_decision_unpreempted_p99_ms": ms(clean, 0.99),
            "route_decisions_preempted": preempted, "route_decisions_with_gc": collected,
            "gc_pause_p99_ms": ms([b - a for a, b in gc_ns], 0.99),
            "worker_table_build_p50_ms": ms(build_ns, 0.5), "worker_table_build_p99_ms": ms(build_ns, 0.99),
            "route_requests": requests, "route_reasons": dict(reasons), "workers": len(workers)}
