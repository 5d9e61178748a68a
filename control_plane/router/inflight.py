"""Requests routed but not yet reported: the part of a worker's load its stats cannot show yet.

A worker's stats report (running, waiting) is a snapshot taken at `reported_at`. Every request this
gateway routes to the worker after that instant and that has not finished is load the report misses.
`unreported(worker, reported_at)` counts exactly those. Requests routed before the snapshot are already
in it, so they are not counted twice. Times are `time.monotonic()` seconds of this process.
Listeners (`subscribe`) hear every change as (worker id, routed-at time, +1 routed / -1 finished), so
a holder of loads (the gateway's `ClusterView` table) updates them in place instead of recounting.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

Listener = Callable[[str, float, int], None]  # (worker id, routed at, +1 routed / -1 finished)


class InflightTracker:
    """Not thread-safe: used from the gateway's event loop only."""

    def __init__(self) -> None:
        self._routed_at: dict[str, dict[str, float]] = defaultdict(dict)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` on every `routed` and on every `finished` of a known request."""
        self._listeners.append(listener)

    def routed(self, worker_id: str, request_id: str, now: float | None = None) -> None:
        """Record that `request_id` was sent to `worker_id`."""
        at = time.monotonic() if now is None else now
        self._routed_at[worker_id][request_id] = at
        for listener in self._listeners:
            listener(worker_id, at, 1)

    def finished(self, worker_id: str, request_id: str) -> None:
        """Forget `request_id` on `worker_id` (done, failed or moved). Unknown ids are ignored."""
        at = self._routed_at.get(worker_id, {}).pop(request_id, None)
        if at is not None:
            for listener in self._listeners:
                listener(worker_id, at, -1)

    def in_flight(self, worker_id: str) -> int:
        return len(self._routed_at.get(worker_id, {}))

    def unreported(self, worker_id: str, reported_at: float | None) -> int:
        """In-flight requests routed to `worker_id` after its report at `reported_at` (None = never
        reported: all of them)."""
        routed = self._routed_at.get(worker_id, {})
        if reported_at is None:
            return len(routed)
        return sum(1 for t in routed.values() if t > reported_at)
