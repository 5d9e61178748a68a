"""Requests routed but not yet reported: the part of a worker's load its stats cannot show yet.

A worker's stats report (running, waiting) is a snapshot taken at `reported_at`. Every request this
gateway routes to the worker after that instant and that has not finished is load the report misses.
`unreported(worker, reported_at)` counts exactly those. Requests routed before the snapshot are already
in it, so they are not counted twice. Times are `time.monotonic()` seconds of this process.
Listeners (`subscribe`) hear every change as (worker id, routed-at time, +1 routed / -1 finished), so
a holder of loads (the gateway's `ClusterView` table) updates them in place instead of recounting.

Pending prefill: `routed(..., prefill_tokens=n)` also records the n prompt tokens the worker must still
compute for that request (the router's estimate: prompt minus what the worker can reuse). They stay
pending until `first_token` (the prefill is done) or `finished`. `pending_prefill()` is the per-worker
sum: the queued prefill work this gateway put on each worker, in tokens, read by the router's cost model
(scorers/cost.py). Workers with nothing pending are absent from it, so reading it is O(busy workers).

In flight at dispatch: `busy()` is the per-worker count of requests routed and not yet finished, kept
as they happen (O(1) per routed/finished), so the router reads a current load in O(busy workers)
(`RouterConfig.load_signal = "dispatch"`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping

Listener = Callable[[str, float, int], None]  # (worker id, routed at, +1 routed / -1 finished)


class InflightTracker:
    """Not thread-safe: used from the gateway's event loop only."""

    def __init__(self) -> None:
        self._routed_at: dict[str, dict[str, float]] = defaultdict(dict)
        self._busy: dict[str, int] = {}  # worker -> requests in flight there (> 0 only)
        self._listeners: list[Listener] = []
        self._prefill: dict[tuple[str, str], int] = {}  # (worker, request) -> tokens still to prefill
        self._pending: dict[str, int] = {}  # worker -> Σ of its entries in _prefill (> 0 only)

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` on every `routed` and on every `finished` of a known request."""
        self._listeners.append(listener)

    def routed(self, worker_id: str, request_id: str, now: float | None = None, *,
               prefill_tokens: int = 0) -> None:
        """Record that `request_id` was sent to `worker_id`, which must still prefill `prefill_tokens`
        of its prompt (>= 0; 0 = unknown or nothing to compute)."""
        at = time.monotonic() if now is None else now
        routed = self._routed_at[worker_id]
        if request_id not in routed:
            self._busy[worker_id] = self._busy.get(worker_id, 0) + 1
        routed[request_id] = at
        if prefill_tokens > 0:
            self._drop_prefill(worker_id, request_id)  # a re-route of the same id replaces its entry
            self._prefill[(worker_id, request_id)] = prefill_tokens
            self._pending[worker_id] = self._pending.get(worker_id, 0) + prefill_tokens
        for listener in self._listeners:
            listener(worker_id, at, 1)

    def first_token(self, worker_id: str, request_id: str) -> None:
        """The request's prefill on `worker_id` is done: its tokens leave the pending sum. Idempotent."""
        if self._prefill:
            self._drop_prefill(worker_id, request_id)

    def finished(self, worker_id: str, request_id: str) -> None:
        """Forget `request_id` on `worker_id` (done, failed or moved). Unknown ids are ignored."""
        self.first_token(worker_id, request_id)
        at = self._routed_at.get(worker_id, {}).pop(request_id, None)
        if at is not None:
            left = self._busy[worker_id] - 1
            if left:
                self._busy[worker_id] = left
            else:
                del self._busy[worker_id]
            for listener in self._listeners:
                listener(worker_id, at, -1)

    def in_flight(self, worker_id: str) -> int:
        return len(self._routed_at.get(worker_id, {}))

    def busy(self) -> Mapping[str, int]:
        """Worker id -> requests this gateway routed there and not yet finished (only workers with > 0):
        the load as this gateway knows it at dispatch, never behind a stats report. A live view: do not
        keep it across routing decisions."""
        return self._busy

    def pending_prefill(self) -> Mapping[str, int]:
        """Worker id -> prompt tokens routed there and not yet first-token'd (only workers with > 0).
        A live view: do not keep it across routing decisions."""
        return self._pending

    def unreported(self, worker_id: str, reported_at: float | None) -> int:
        """In-flight requests routed to `worker_id` after its report at `reported_at` (None = never
        reported: all of them)."""
        routed = self._routed_at.get(worker_id, {})
        if reported_at is None:
            return len(routed)
        return sum(1 for t in routed.values() if t > reported_at)

    def _drop_prefill(self, worker_id: str, request_id: str) -> None:
        tokens = self._prefill.pop((worker_id, request_id), 0)
        if tokens:
            left = self._pending[worker_id] - tokens
            if left > 0:
                self._pending[worker_id] = left
            else:
                del self._pending[worker_id]
