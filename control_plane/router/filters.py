"""Filters: which workers may take a request at all.

Applied in order; each returns the subset of its input that passes. Every filter is a pure function of
(request, workers). The pipeline raises `UnavailableError` naming the first filter that left nothing,
except `has_capacity`, which is soft: when every remaining worker is at capacity the request still goes
to one of them (it queues there) rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from control_plane.router.types import RouteRequest, WorkerState

Filter = Callable[[RouteRequest, Sequence[WorkerState]], list[WorkerState]]


def healthy(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    """Workers that pass health checks and are not draining."""
    return [w for w in workers if w.healthy and not w.draining]


def serves_model(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    return [w for w in workers if w.model == request.model]


def has_role(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    return [w for w in workers if w.role == request.role]


def in_route_pools(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    """Workers of the pools the route step chose (all workers when it chose none)."""
    if not request.pools:
        return list(workers)
    return [w for w in workers if w.pool in request.pools]


def not_excluded(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    """Drops workers this request already failed on (retry / migration)."""
    return [w for w in workers if w.worker_id not in request.exclude]


def in_plan_pools(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    """Workers of pools with a positive plan weight; all workers when the plan gives no weights, or
    when no worker of a weighted pool is up (serving off-plan beats failing)."""
    if not request.pool_weights:
        return list(workers)
    planned = [w for w in workers if request.pool_weights.get(w.pool, 0.0) > 0.0]
    return planned or list(workers)


def has_capacity(request: RouteRequest, workers: Sequence[WorkerState]) -> list[WorkerState]:
    """Workers below their admission capacity (`max_concurrency`, 0 = unbounded). Soft: see module."""
    room = [w for w in workers if w.max_concurrency <= 0 or w.load < w.max_concurrency]
    return room or list(workers)


HARD_FILTERS: tuple[tuple[str, Filter], ...] = (
    ("healthy", healthy),
    ("model", serves_model),
    ("role", has_role),
    ("route_pools", in_route_pools),
    ("not_excluded", not_excluded),
)
SOFT_FILTERS: tuple[tuple[str, Filter], ...] = (
    ("plan_pools", in_plan_pools),
    ("capacity", has_capacity),
)
