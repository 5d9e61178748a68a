"""The router's vocabulary: immutable snapshots in, one immutable decision out.

The router never talks to workers, Redis or the prefix index itself. The gateway hands it a
`RouteRequest` (what is being asked), a tuple of `WorkerState` (what the cluster looks like now) and a
`PrefixHoldings` (which worker and tier holds how much of this prompt), and gets back a `RouteDecision`.

Roles, devices and tier names are `common.vocab`'s. The router credits three places a prompt's KV can
be loaded from (`CREDITED_TIERS`): the worker's own memory (`device`: its KV pool, and its host-memory
tier folded in by the prefix source, as both load without a network read), the shared `redis` tier
and the `disk` tier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.vocab import TIERS, Device, Role, Tier

# Every vocabulary tier except `memory`, which the prefix source counts as the worker's `device`.
CREDITED_TIERS: tuple[Tier, ...] = tuple(t for t in TIERS if t != "memory")
DEFAULT_POOL = "default"


@dataclass(frozen=True)
class WorkerState:
    """One worker as the router sees it at one instant.

    `num_running` / `num_waiting` are the worker's own last report; `num_unreported` counts requests
    this gateway routed to it after that report and that are still in flight (see `inflight.py`).
    `max_concurrency` is the worker's admission capacity (0 = unknown, no capacity filter).
    """

    worker_id: str
    address: str
    model: str
    role: Role = "colocated"
    pool: str = DEFAULT_POOL
    node_type: str = ""
    device: Device = "cpu"
    healthy: bool = True
    draining: bool = False
    num_running: int = 0
    num_waiting: int = 0
    num_unreported: int = 0
    max_concurrency: int = 0

    @property
    def load(self) -> int:
        """Queue + running + routed-but-not-reported: the load scorer's input."""
        return self.num_running + self.num_waiting + self.num_unreported


@dataclass(frozen=True)
class PrefixHoldings:
    """How much of one prompt each worker and tier holds, as the prefix index (or the gateway's
    routed-prefix table) knows it.

    `worker_blocks[w]` is the number of leading prompt blocks worker `w` holds in its own memory
    (tier `device`);
    `local_blocks[(w, tier)]` those in a tier private to w (e.g. its node-local "disk");
    `shared_blocks[tier]` those held by a shared tier (e.g. "redis") that every worker can read.
    Block counts, not tokens.
    """

    num_blocks: int = 0
    worker_blocks: Mapping[str, int] = field(default_factory=dict)
    shared_blocks: Mapping[str, int] = field(default_factory=dict)
    local_blocks: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def blocks_for(self, worker_id: str, tier: Tier) -> int:
        if tier == "device":
            return self.worker_blocks.get(worker_id, 0)
        return max(self.local_blocks.get((worker_id, tier), 0), self.shared_blocks.get(tier, 0))

    def best_blocks_for(self, worker_id: str) -> int:
        """Leading blocks `worker_id` can get without recomputing, from any tier."""
        return max(self.blocks_for(worker_id, t) for t in CREDITED_TIERS)


@dataclass(frozen=True)
class RouteRequest:
    """What to route.

    `pools` restricts the request to the workers of these pools (empty = any pool): the gateway's
    route step (control_plane/router/split.py) chose the pool before the worker is chosen.
    `exclude` lists workers already tried (retries).
    `affinity_worker` is the worker that last served `session_id` ("" = none), filled in by the router.
    """

    model: str
    role: Role = "colocated"
    request_class: str = "default"
    num_prompt_tokens: int = 0
    pools: frozenset[str] = frozenset()
    session_id: str = ""
    affinity_worker: str = ""
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RouteDecision:
    """The chosen worker and why. `reason` is a bounded label for metrics. `prefill_tokens`: prompt
    tokens the worker must still compute by the router's estimate (its prefix hits credited as in
    scorers/cost.py), for `InflightTracker.routed(..., prefill_tokens=)`; 0 unless the scoring is `cost`,
    the only reader of the pending sum (the weighted path skips the estimate on every route)."""

    worker: WorkerState
    policy: str
    reason: str
    score: float = 0.0
    cached_blocks: int = 0
    num_candidates: int = 0
    prefill_tokens: int = 0
