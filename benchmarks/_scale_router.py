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

Decision (timed per request, `time.perf_counter_ns`, wall clock): the gateway's prefix source
(`control_plane.orchestrator.prefix.IndexPrefixSource.match`: the index walk and the holdings it
builds) plus `control_plane.router.Router.route` (filters, the four scorers with the plan's pool
weights, picker) over the 1,000 worker states. A request: system prompt s, then 32 blocks of one
chain of a worker of group s, then 8 blocks nobody holds (48 blocks, 768 tokens).
The states are one snapshot (a tuple, as the cluster does not change during the run), so the router
builds its `WorkerTable` once and every decision reads it; that per-snapshot cost is reported apart
(`worker_table_build_*_ms`: `WorkerTable.build` over the 1,000 states), since a caller that hands the
router a fresh list per request pays it per request. The same decisions' thread CPU time
(`time.thread_time_ns`) is reported too (`route_decision_cpu_*_ms`): on a loaded machine the wall
clock includes time the process waited for a core; the target is on the wall clock.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cache.events import KVEvent
from cache.hashing import BlockHash
from cache.prefix_index import PrefixIndex
from common.registry import WorkerRecord
from common.stats import percentile
from control_plane.orchestrator.prefix import IndexPrefixSource
from control_plane.router import Router, RouteRequest, WorkerState, WorkerTable

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


def time_decisions(state: SyntheticIndex, workers: list[WorkerState], requests: int,
                   seed: int = 0) -> dict[str, Any]:
    """p50 / p99 of the decision time (prefix lookup + route) and of each half, in milliseconds; the
    decisions' thread CPU time; and the cost of building the snapshot's table."""
    rng = random.Random(seed)
    source = IndexPrefixSource(lambda: state.index)
    router = Router()
    snapshot = tuple(workers)
    weights = {pool: 1.0 / len(POOLS) for pool in POOLS}
    lookup_ns: list[float] = []
    route_ns: list[float] = []
    cpu_ns: list[float] = []
    reasons: Counter[str] = Counter()
    for i in range(requests + 200):  # the first 200 warm the caches and are not counted
        hashes = state.prompt(rng)
        request = RouteRequest(model="m", num_prompt_tokens=16 * len(hashes), pool_weights=weights)
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        holdings = source.match(hashes)
        t1 = time.perf_counter_ns()
        decision = router.route(request, snapshot, holdings)
        t2, c2 = time.perf_counter_ns(), time.thread_time_ns()
        if i >= 200:
            lookup_ns.append(t1 - t0)
            route_ns.append(t2 - t1)
            cpu_ns.append(c2 - c0)
            reasons[decision.reason] += 1
    total = [a + b for a, b in zip(lookup_ns, route_ns, strict=True)]
    build_ns: list[float] = []
    for _ in range(50):
        t0 = time.perf_counter_ns()
        WorkerTable.build(workers)
        build_ns.append(time.perf_counter_ns() - t0)

    def ms(values: list[float], q: float) -> float | None:
        p = percentile(values, q)
        return None if p is None else round(p / 1e6, 4)

    return {"route_decision_p50_ms": ms(total, 0.5), "route_decision_p99_ms": ms(total, 0.99),
            "prefix_lookup_p99_ms": ms(lookup_ns, 0.99), "router_pipeline_p99_ms": ms(route_ns, 0.99),
            "route_decision_cpu_p50_ms": ms(cpu_ns, 0.5), "route_decision_cpu_p99_ms": ms(cpu_ns, 0.99),
            "worker_table_build_p50_ms": ms(build_ns, 0.5), "worker_table_build_p99_ms": ms(build_ns, 0.99),
            "route_requests": requests, "route_reasons": dict(reasons),
            "workers": len(workers)}
