"""Per-class routing table: which pools (and roles) the plan sends a request class to.

The planner's `Plan` (placement/) gives, per request class, a share per (pool, role). The gateway
reduces it to a `ClassRoute`: the colocated pools with their weights, the prefill and decode pools
with theirs, and `disaggregated_share` — the part of the class the plan sends to P/D pools.
Between the colocated and disaggregated parts the `PathChooser` alternates deterministically by
largest deficit (smooth weighted round robin), so over any n requests the disaggregated count is
within 1 of share · n. With no plan, every class is one colocated route over every pool (empty
weights = all pools equally).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClassRoute:
    request_class: str = "default"
    colocated: Mapping[str, float] = field(default_factory=dict)
    prefill: Mapping[str, float] = field(default_factory=dict)
    decode: Mapping[str, float] = field(default_factory=dict)
    disaggregated_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.disaggregated_share <= 1.0:
            raise ValueError(f"disaggregated_share must be in [0, 1], got {self.disaggregated_share}")
        if self.disaggregated_share > 0 and not (self.prefill and self.decode):
            raise ValueError("a disaggregated share needs both prefill and decode pools")


DEFAULT_ROUTE = ClassRoute()


class PathChooser:
    """Chooses colocated or disaggregated per request, following each class's share exactly."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}

    def disaggregate(self, route: ClassRoute) -> bool:
        """True when this request of `route.request_class` should take the P/D path. Changes the
        class's counters."""
        if route.disaggregated_share <= 0.0:
            return False
        total, disagg = self._counts.get(route.request_class, (0, 0))
        total += 1
        choose = disagg + 1 <= route.disaggregated_share * total + 1e-9
        self._counts[route.request_class] = (total, disagg + int(choose))
        return choose
