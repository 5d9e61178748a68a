"""The ILP's typed input: pools, demands and the per-route loads, all plain numbers.

A `Problem` is built from catalog + models + workload by `placement.compile` (or from Mélange's files by
`placement.melange`), so the ILP itself knows nothing about rooflines or files.
Loads are instances per (req/s): a class of rate r sending share x to an option of load ℓ occupies
r·x·ℓ instances of the pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from common.vocab import Role

# Classes below this rate (req/s) count as idle: a solver's tolerances cannot route them meaningfully.
MIN_RATE = 1e-6


def pool_name(model: str, node_type: str, role: str) -> str:
    """Stable pool name used in plans, routing and deployments: `model:node_type:role`."""
    return f"{model}:{node_type}:{role}"


@dataclass(frozen=True)
class PoolSpec:
    """One (model, node type, role) pool: price per instance-hour, NIC bytes/s, the node's group."""

    model: str
    node_type: str
    role: Role
    price_per_hour: float
    network_bytes_per_second: float = float("inf")

    @property
    def name(self) -> str:
        return pool_name(self.model, self.node_type, self.role)


@dataclass(frozen=True)
class Demand:
    """One request class to serve: `rate` req/s; `kv_transfer_bytes` per request on a P/D route."""

    name: str
    model: str
    slo: str
    rate: float
    kv_transfer_bytes: float = 0.0


@dataclass(frozen=True)
class ColocatedOption:
    """Class `demand` (index) may run on colocated pool `pool` (index) at `load` instances per req/s."""

    demand: int
    pool: int
    load: float


@dataclass(frozen=True)
class DisaggregatedOption:
    """Class `demand` may prefill on `prefill_pool` and decode on `decode_pool` (indices)."""

    demand: int
    prefill_pool: int
    decode_pool: int
    prefill_load: float
    decode_load: float
    transfer_seconds: float


@dataclass(frozen=True)
class SolverOptions:
    """`solver`: "highs" (CBC fallback when HiGHS is missing) or "cbc". Time in seconds.

    `min_replicas`: availability floor, instances of every pool the plan uses (row `replicas_p`),
    capped by its node type's inventory. 1 (the default here) adds no row, the pure cost ILP that
    `heteroserve plan` and Mélange's reproduction solve; the live planner defaults to 2, so killing
    any one worker leaves a peer of its pool to retry on.

    `decompose_min_classes`: from this many classes on, an ILP whose models share inventory is solved
    with per-model bounds and a joint start first (`ilp/decompose.py`; None: never). Below it the plain
    ILP is faster and tighter: `bench placement`'s 432-class, 4-model shared-inventory instance proves
    0.21% in 1.1 s plainly, 0.95% in 5.6 s decomposed (the parts cost seconds whatever the size), so
    such plans stay exactly as the plain ILP finds them; `bench scale`'s 1,000 classes need it."""

    solver: Literal["highs", "cbc"] = "highs"
    time_limit_seconds: float | None = 10.0
    mip_gap: float = 1e-4
    transfer_utilization: float = 0.8
    min_replicas: int = 1
    decompose_min_classes: int | None = 500

    def __post_init__(self) -> None:
        if self.solver not in ("highs", "cbc"):
            raise ValueError(f"solver: must be 'highs' or 'cbc', got {self.solver!r}")
        if self.time_limit_seconds is not None and self.time_limit_seconds <= 0:
            raise ValueError(f"time_limit_seconds: must be > 0, got {self.time_limit_seconds}")
        if not 0 <= self.mip_gap < 1:
            raise ValueError(f"mip_gap: must be in [0, 1), got {self.mip_gap}")
        if not 0 < self.transfer_utilization <= 1:
            raise ValueError(f"transfer_utilization: must be in (0, 1], got {self.transfer_utilization}")
        if self.min_replicas < 1:
            raise ValueError(f"min_replicas: must be >= 1, got {self.min_replicas}")
        if self.decompose_min_classes is not None and self.decompose_min_classes < 2:
            raise ValueError(f"decompose_min_classes: must be >= 2 or None, got {self.decompose_min_classes}")


def _frozen(m: Mapping[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class Problem:
    """Everything the ILP needs. `inventory`: node type → max nodes (absent = unlimited).
    `current`: pool name → running instances, for the churn penalty ($/h per instance changed).
    `exclusions`: class name → why options were left out (for infeasibility explanations)."""

    demands: tuple[Demand, ...]
    pools: tuple[PoolSpec, ...]
    colocated: tuple[ColocatedOption, ...]
    disaggregated: tuple[DisaggregatedOption, ...] = ()
    inventory: Mapping[str, int] = field(default_factory=dict)
    current: Mapping[str, int] = field(default_factory=dict)
    churn_penalty: float = 0.0
    exclusions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inventory", _frozen(self.inventory))
        object.__setattr__(self, "current", _frozen(self.current))
        object.__setattr__(self, "exclusions", _frozen(self.exclusions))
        for o in self.colocated:
            assert 0 <= o.demand < len(self.demands) and 0 <= o.pool < len(self.pools), "bad option index"
            assert self.pools[o.pool].role == "colocated" and o.load > 0, "colocated option on wrong pool"
        for d in self.disaggregated:
            assert self.pools[d.prefill_pool].role == "prefill", "prefill option on a non-prefill pool"
            assert self.pools[d.decode_pool].role == "decode", "decode option on a non-decode pool"
        if self.churn_penalty < 0:
            raise ValueError(f"churn_penalty: must be >= 0, got {self.churn_penalty}")

    def without_disaggregation(self) -> Problem:
        return Problem(
            self.demands,
            self.pools,
            self.colocated,
            (),
            self.inventory,
            self.current,
            self.churn_penalty,
            self.exclusions,
        )

    def pool_index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.pools)}
