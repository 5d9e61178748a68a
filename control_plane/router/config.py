"""`RouterConfig`: the router's one frozen configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from control_plane.router.scorers.prefix import DEFAULT_TIER_CREDITS
from control_plane.router.split import DEFAULT_EPSILON, DEFAULT_WINDOW
from control_plane.router.types import CREDITED_TIERS

Policy = Literal["prefix_aware", "round_robin", "least_load", "random"]
POLICIES: tuple[str, ...] = get_args(Policy)
Scoring = Literal["cost", "weighted"]
SCORINGS: tuple[str, ...] = get_args(Scoring)
LoadSignal = Literal["dispatch", "reported"]
LOAD_SIGNALS: tuple[str, ...] = get_args(LoadSignal)


@dataclass(frozen=True)
class RouterConfig:
    """`policy` picks our scoring pipeline (`prefix_aware`) or a baseline for comparison.

    `scoring` is how `prefix_aware` ranks workers: `cost` (opt-in) takes the least estimated cost in
    tokens, cache savings against queued work (scorers/cost.py: `block_size` tokens per KV block, which
    must be the gateway's; `queue_weight`; `request_cost_tokens` per in-flight request); `weighted`
    (default: bench routing's windows run at e045def kept only 0.75 of the oracle with `cost`, against
    1.000 with `weighted`; docs/benchmarks.md) takes the best weighted sum of the prefix, load and affinity
    scores (the scorer weights apply to it only).
    `balance_*` are the imbalance guard's thresholds, in requests, applied after either (see picker.py).
    `load_signal` is the load that `least_load`, the load scorer, the cost model and the guard read:
    `dispatch` (default) = the requests this gateway has in flight on the worker at the moment of the
    decision (the attached `InflightTracker`; SGLang's and vllm-router's cache_aware count load the same
    way), `reported` = the worker's last stats report (running + waiting) + requests routed after it,
    which also sees other gateways' requests but keeps a finished request counted until the next report
    (the gateway polls every 0.5 s by default; a bench request lives ~50 ms). Without a tracker both
    read `reported`.
    `session_capacity` bounds the session → worker map. `seed` seeds `random`.
    `route_share_epsilon` and `route_share_window` bound the route step's prefix deviation: a route
    takes at most its planned share + ε of its class's last `window` decisions (see split.py).
    """

    policy: Policy = "prefix_aware"
    scoring: Scoring = "weighted"
    block_size: int = 16
    queue_weight: float = 1.0
    request_cost_tokens: float = 32.0
    prefix_weight: float = 1.0
    load_weight: float = 0.5
    affinity_weight: float = 0.2
    tier_credits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_CREDITS))
    balance_abs_threshold: int = 8
    balance_rel_threshold: float = 1.5
    load_signal: LoadSignal = "dispatch"
    session_capacity: int = 100_000
    seed: int = 0
    route_share_epsilon: float = DEFAULT_EPSILON
    route_share_window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if self.load_signal not in LOAD_SIGNALS:
            raise ValueError(f"load_signal must be one of {', '.join(LOAD_SIGNALS)}, "
                             f"got {self.load_signal!r}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        for name in ("prefix_weight", "load_weight", "affinity_weight", "queue_weight",
                     "request_cost_tokens"):
            if not getattr(self, name) >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for tier in self.tier_credits:
            if tier not in CREDITED_TIERS:
                raise ValueError(f"tier_credits has unknown tier {tier!r} (expected one of {CREDITED_TIERS})")
        if self.balance_abs_threshold < 0:
            raise ValueError(f"balance_abs_threshold must be >= 0, got {self.balance_abs_threshold}")
        if self.balance_rel_threshold < 1.0:
            raise ValueError(f"balance_rel_threshold must be >= 1, got {self.balance_rel_threshold}")
        if not 0.0 <= self.route_share_epsilon <= 1.0:
            raise ValueError(f"route_share_epsilon must be in [0, 1], got {self.route_share_epsilon}")
        if self.route_share_window < 1:
            raise ValueError(f"route_share_window must be >= 1, got {self.route_share_window}")
        if self.session_capacity < 1:
            raise ValueError(f"session_capacity must be >= 1, got {self.session_capacity}")

    @property
    def scorer_weights(self) -> dict[str, float]:
        return {"prefix": self.prefix_weight, "load": self.load_weight, "affinity": self.affinity_weight}
