"""Per-class routing table: the routes the plan gives a request class, and which one a request takes.

The planner's `placement.plan.Plan` gives every request class a list of routes with shares summing to
1: a colocated pool, or a (prefill pool, decode pool) pair the ILP chose together. The gateway keeps
them as a `ClassRoute` of `PlannedRoute`s (same order as the plan). `RouteChooser` picks the route of
one request with the router's `RouteSplitter` (smooth weighted round robin with bounded prefix
deviation, see control_plane/router/split.py), from the workers that are up and the prompt's prefix
holdings. With no plan a class has no routes: any worker of the model serves it, colocated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.vocab import Role
from control_plane.router import PrefixHoldings, WorkerState, WorkerTable
from control_plane.router.split import RouteSplitter, SplitChoice


@dataclass(frozen=True)
class PlannedRoute:
    """One route of a class: colocated on `pool`, or prefill on `prefill_pool` then decode on
    `decode_pool`. `share` in (0, 1]: the class's fraction the plan sends here."""

    share: float
    pool: str = ""
    prefill_pool: str = ""
    decode_pool: str = ""

    def __post_init__(self) -> None:
        if bool(self.pool) == bool(self.prefill_pool and self.decode_pool):
            raise ValueError("route: give either pool, or both prefill_pool and decode_pool")
        if not 0.0 < self.share <= 1.0 + 1e-9:
            raise ValueError(f"share: must be in (0, 1], got {self.share}")

    @property
    def disaggregated(self) -> bool:
        return not self.pool

    @property
    def name(self) -> str:
        """`pool`, or `prefill_pool>decode_pool` (status and logs)."""
        return self.pool or f"{self.prefill_pool}>{self.decode_pool}"

    def pool_roles(self) -> tuple[tuple[str, Role], ...]:
        """(pool, role) of every pool a request on this route uses."""
        if self.pool:
            return ((self.pool, "colocated"),)
        return ((self.prefill_pool, "prefill"), (self.decode_pool, "decode"))


@dataclass(frozen=True)
class ClassRoute:
    """A request class's routes (empty = no plan for it: any worker of the model)."""

    request_class: str = "default"
    slo_class: str = ""
    routes: tuple[PlannedRoute, ...] = ()
    rate_per_s: float = 0.0  # the plan's arrival rate for the class (weights planned shares in status)

    @property
    def shares(self) -> tuple[float, ...]:
        return tuple(r.share for r in self.routes)


DEFAULT_ROUTE = ClassRoute()


def _serving(workers: Sequence[WorkerState] | WorkerTable,
             model: str) -> Mapping[tuple[str, str], Sequence[WorkerState]]:
    """Healthy, non-draining workers of `model` by (pool, role); a table has them grouped already."""
    if isinstance(workers, WorkerTable):
        return workers.serving.get(model, {})
    out: dict[tuple[str, str], list[WorkerState]] = {}
    for w in workers:
        if w.healthy and not w.draining and w.model == model:
            out.setdefault((w.pool, w.role), []).append(w)
    return out


class RouteChooser:
    """Chooses a planned route per request. Owns the splitter's state (per gateway replica)."""

    def __init__(self, splitter: RouteSplitter | None = None) -> None:
        self.splitter = splitter or RouteSplitter()

    def choose(self, route: ClassRoute, model: str, workers: Sequence[WorkerState] | WorkerTable,
               prefix: PrefixHoldings) -> tuple[PlannedRoute, tuple[str, ...]] | None:
        """(route, deviation reasons: empty = none) for one request of `route.request_class`; None when the
        class has no route with a healthy worker in each of its pools. Changes the splitter's state."""
        if not route.routes:
            return None
        serving = _serving(workers, model)
        available = [all(serving.get(pr) for pr in r.pool_roles()) for r in route.routes]
        affinity = [self._affinity(r, serving, prefix) for r in route.routes]
        choice: SplitChoice | None = self.splitter.choose(route.request_class, route.shares, available,
                                                          affinity)
        if choice is None:
            return None
        return route.routes[choice.index], choice.deviations

    @staticmethod
    def _affinity(route: PlannedRoute, serving: Mapping[tuple[str, str], Sequence[WorkerState]],
                  prefix: PrefixHoldings) -> float:
        """Fraction of the prompt's blocks the best worker of any of the route's pools holds in its
        own memory (a P/D route's decode worker counts: a cached prompt runs there alone)."""
        if prefix.num_blocks <= 0:
            return 0.0
        held = max((prefix.worker_blocks.get(w.worker_id, 0)
                    for pr in route.pool_roles() for w in serving.get(pr, ())), default=0)
        return min(held, prefix.num_blocks) / prefix.num_blocks
