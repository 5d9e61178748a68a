"""Planned vs served share: what the plan asked of each pool and what this gateway sent there.

`ShareLedger` counts, since the plan in use was adopted (`reset`), the requests of each class and the
route each one was given (`record`). A request counts once for every pool of its route: a colocated
route for (pool, colocated), a P/D route for (prefill pool, prefill) and (decode pool, decode). A
request no route could take (`no_route`: off-plan) counts for its class only, so it lowers the served
shares.

Shares per (SLO class, pool, role), `pool_shares()`:

    served(s, p, r)  = Σ_{c ∈ s} served(c, p, r) / Σ_{c ∈ s} n(c)
    planned(s, p, r) = Σ_{c ∈ s} n(c) · share(c, p, r) / Σ_{c ∈ s} n(c)

i.e. the planned share is weighted by the classes actually served, so the two are comparable whatever
the traffic mix; before any request of the SLO class it is weighted by the plan's class rates and
`served` is None. share(c, p, r) is the sum of the shares of c's routes through (p, r).

Cardinality: SLO classes come from the plan's classifier (plus the gateway's fixed SLO names for
requests without a plan), pools from the plan: at most |SLO classes| × |pools| rows (a pool has one
role). Class rows (`class_shares()`) are bounded by the plan's classifier (models × SLO classes ×
input buckets × output buckets).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from control_plane.orchestrator.routes import ClassRoute, PlannedRoute


@dataclass(frozen=True)
class PoolShare:
    slo_class: str
    pool: str
    role: str
    planned: float
    served: float | None
    requests: int  # requests of the SLO class since the plan was adopted


@dataclass(frozen=True)
class RouteShare:
    request_class: str
    slo_class: str
    route: PlannedRoute
    planned: float
    served: float | None
    requests: int  # requests of the class since the plan was adopted


class ShareLedger:
    """Not thread-safe: used from the gateway's event loop only."""

    def __init__(self) -> None:
        self.plan_version = 0
        self._planned: dict[str, ClassRoute] = {}
        self._requests: dict[str, int] = defaultdict(int)
        self._routes: dict[tuple[str, str], int] = defaultdict(int)  # (class, route name) → requests

    def reset(self, plan_version: int, classes: Iterable[ClassRoute]) -> None:
        """A new plan: forget the counts; `classes` are the plan's classes (planned shares and rates)."""
        self.plan_version = plan_version
        self._planned = {c.request_class: c for c in classes}
        self._requests.clear()
        self._routes.clear()

    def record(self, route: ClassRoute, taken: PlannedRoute | None) -> None:
        """One request of `route.request_class` sent on `taken` (None: off-plan)."""
        self._planned.setdefault(route.request_class, route)
        self._requests[route.request_class] += 1
        if taken is not None:
            self._routes[(route.request_class, taken.name)] += 1

    def class_shares(self) -> list[RouteShare]:
        """Per class and planned route (plan order): planned share, served share, requests."""
        out = []
        for name in sorted(self._planned):
            c = self._planned[name]
            n = self._requests.get(name, 0)
            for r in c.routes:
                served = self._routes.get((name, r.name), 0) / n if n else None
                out.append(RouteShare(name, c.slo_class, r, r.share, served, n))
        return out

    def pool_shares(self) -> list[PoolShare]:
        """Per (SLO class, pool, role), sorted: see the module docstring."""
        weight: dict[str, float] = defaultdict(float)
        planned: dict[tuple[str, str, str], float] = defaultdict(float)
        served: dict[tuple[str, str, str], int] = defaultdict(int)
        requests: dict[str, int] = defaultdict(int)
        by_slo_traffic = {c.slo_class for name, c in self._planned.items() if self._requests.get(name)}
        for name, c in self._planned.items():
            n = self._requests.get(name, 0)
            requests[c.slo_class] += n
            w = float(n) if c.slo_class in by_slo_traffic else c.rate_per_s
            weight[c.slo_class] += w
            for r in c.routes:
                for pool, role in r.pool_roles():
                    planned[(c.slo_class, pool, role)] += w * r.share
                    served[(c.slo_class, pool, role)] += self._routes.get((name, r.name), 0)
        rows = []
        for key in sorted(planned):
            slo = key[0]
            total, n = weight[slo], requests[slo]
            rows.append(PoolShare(slo, key[1], key[2], planned[key] / total if total > 0 else 0.0,
                                  served[key] / n if n else None, n))
        return rows
