"""Filters: which workers may take a request at all.

Applied in order; each maps (request, table, positions) to the positions that pass, with numpy over the
positions (no per-worker Python). The hard filters `healthy`, `model`, `role` are answered by the
table's per-(model, role) lists of live workers; the pipeline raises `UnavailableError` naming the
first filter that left nothing. The soft filter `capacity` never leaves nothing: when every remaining
worker is at capacity, it keeps them all (the request queues on one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from control_plane.router.table import WorkerTable
from control_plane.router.types import RouteRequest

Filter = Callable[[RouteRequest, WorkerTable, np.ndarray], np.ndarray]
_NONE = np.zeros(0, dtype=np.int64)


def live_of_role(request: RouteRequest, table: WorkerTable) -> tuple[str, np.ndarray]:
    """Positions of the healthy, not draining workers serving the request's model and role, or the
    name of the first of the filters `healthy`, `model`, `role` that left none (and no positions)."""
    if table.num_live == 0:
        return "healthy", _NONE
    if request.model not in table.live_models:
        return "model", _NONE
    found = table.live.get((request.model, request.role))
    return ("role", _NONE) if found is None else ("", found)


def in_route_pools(request: RouteRequest, table: WorkerTable, idx: np.ndarray) -> np.ndarray:
    """Workers of the pools the route step chose (all workers when it chose none)."""
    if not request.pools:
        return idx
    return idx[table.in_pools(request.pools)[idx]]


def not_excluded(request: RouteRequest, table: WorkerTable, idx: np.ndarray) -> np.ndarray:
    """Drops workers this request already failed on (retry / migration)."""
    gone = [p for w in request.exclude if (p := table.position.get(w)) is not None]
    return idx[~np.isin(idx, gone)] if gone else idx


def has_capacity(request: RouteRequest, table: WorkerTable, idx: np.ndarray) -> np.ndarray:
    """Workers below their admission capacity (`max_concurrency`, 0 = unbounded). Soft: see module."""
    cap = table.max_concurrency[idx]
    room = idx[(cap <= 0) | (table.load[idx] < cap)]
    return room if len(room) else idx


HARD_FILTERS: tuple[tuple[str, Filter], ...] = (
    ("route_pools", in_route_pools),
    ("not_excluded", not_excluded),
)
SOFT_FILTERS: tuple[tuple[str, Filter], ...] = (
    ("capacity", has_capacity),
)
