"""The gateway's view of the workers: registry records + stats + health, refreshed periodically.

Every `refresh_seconds` the view lists live workers from the Redis registry, opens a `WorkerClient`
for new ones (closing those of vanished ones), and polls every worker's `Stats` concurrently with a
timeout. A worker whose poll fails is unhealthy and leaves the candidate set; it comes back after its
next successful poll. The orchestrator may also `mark_failed` a worker at once when a call to it fails.
`table()` is the router's view for the hot path: one `WorkerTable`, rebuilt only when the membership
changes (a worker joins or leaves, its record, health or draining changes); between those its loads
move in place, on each stats report (running + waiting + unreported) and on each routed/finished
request (the shared `InflightTracker` tells the view), so a decision never rebuilds it. `snapshot()`
is a fresh tuple of `WorkerState`s with current loads, for status and admin readers.
Redis unreachable: the view keeps its last list of workers and says so.
`on_leave(worker_id)` is called when a worker leaves the view, or comes back at a new address (a new
process, with an empty cache): the orchestrator forgets what it routed there.
With `tls`, every channel is mutual TLS: a worker whose certificate does not chain to the cluster CA
fails its stats poll (UNAVAILABLE) and never becomes a candidate. A channel built after a certificate
rotation (a new worker, or a renewed channel of an unhealthy one) uses the new files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.errors import HeteroserveError, NotFoundError
from common.registry import WorkerRecord, list_workers
from common.tls import ClientTLS
from control_plane.router import InflightTracker, WorkerState, WorkerTable
from workerrpc.client import WorkerClient

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from heteroserve.v1 import worker_pb2

log = logging.getLogger(__name__)
RETIRE_SECONDS = 120.0
# A worker missing from the registry stays a candidate this long (by default) while its stats polls
# succeed: Redis restarting empty (or a late heartbeat) must not take a serving worker out of the cluster.
ABSENT_GRACE_SECONDS = 5.0
# Own subchannels and a short reconnect backoff: a worker that comes back is reachable within ~1 s,
# instead of after gRPC's default backoff of up to 120 s. HTTP/2 keepalive pings every 10 s (answer
# within 5 s; this gRPC waits `ping_timeout_ms`, default 60 s, for the answer, not keepalive_timeout_ms):
# the long-lived Session stream to a worker whose host died or whose process hangs breaks within ~15 s,
# failing its generations over to other workers, instead of waiting for TCP's timeouts.
# Workers accept pings this often (workers/service/server.py, KEEPALIVE_SERVER_OPTIONS).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.ping_timeout_ms", 5_000), ("grpc.http2.max_pings_without_data", 0))


@dataclass
class _Entry:
    record: WorkerRecord
    client: WorkerClient
    stats: worker_pb2.WorkerStats | None = None
    reported_at: float | None = None
    healthy: bool = False
    missing_since: float | None = None  # when the registry stopped listing this worker


class ClusterView:
    """Owns one `WorkerClient` per live worker. Start with `start()`, stop with `stop()`."""

    def __init__(self, redis: Redis | None, cluster_token: str, inflight: InflightTracker, *,
                 refresh_seconds: float = 0.5, unary_timeout_seconds: float = 5.0,
                 absent_grace_seconds: float = ABSENT_GRACE_SECONDS,
                 on_leave: Callable[[str], None] | None = None, tls: ClientTLS | None = None) -> None:
        self._redis = redis
        self._token = cluster_token
        self._tls = tls  # mutual TLS to every worker (None: plaintext); read per new channel
        self._inflight = inflight
        self._refresh_seconds = refresh_seconds
        self._timeout = unary_timeout_seconds
        self._entries: dict[str, _Entry] = {}
        self._static: dict[str, WorkerRecord] = {}
        self._task: asyncio.Task[None] | None = None
        self._retired: list[tuple[float, WorkerClient]] = []
        self._absent_grace = absent_grace_seconds
        self.on_leave = on_leave
        self.registry_ok = redis is None
        self._table: WorkerTable | None = None  # None: the membership changed since the last build
        inflight.subscribe(self._on_inflight)

    def add_static(self, record: WorkerRecord) -> None:
        """Serve `record` without a registry (embedded use, tests without Redis)."""
        self._static[record.worker_id] = record

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="cluster-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for entry in self._entries.values():
            await entry.client.close()
        self._entries.clear()
        for _, client in self._retired:
            await client.close()
        self._retired.clear()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:  # keep refreshing whatever one round hit
                log.exception("cluster refresh failed")

    async def refresh(self) -> None:
        """One round: registry list, then every worker's stats (concurrently)."""
        records = await self._list_records()
        if records is not None:
            await self._sync(records)
        await self._renew_unhealthy_channels()
        await asyncio.gather(*(self._poll(e) for e in list(self._entries.values())))

    async def _renew_unhealthy_channels(self) -> None:
        """A fresh channel for every unhealthy worker, so a restarted worker is seen at the next poll
        rather than after gRPC's reconnect backoff. Old channels may still carry streams: they are
        closed `RETIRE_SECONDS` later."""
        now = time.monotonic()
        for entry in self._entries.values():
            if not entry.healthy:
                self._retired.append((now, entry.client))
                entry.client = self._client(entry.record.address)
        keep = []
        for retired_at, client in self._retired:
            if now - retired_at > RETIRE_SECONDS:
                await client.close()
            else:
                keep.append((retired_at, client))
        self._retired = keep

    async def _list_records(self) -> dict[str, WorkerRecord] | None:
        records = dict(self._static)
        if self._redis is None:
            return records
        try:
            for record in await asyncio.wait_for(list_workers(self._redis), self._timeout):
                records[record.worker_id] = record
        except Exception as exc:
            if self.registry_ok:
                log.warning("worker registry unreachable (%s); keeping the last known workers", exc)
            self.registry_ok = False
            return None
        self.registry_ok = True
        return records

    async def _sync(self, records: dict[str, WorkerRecord]) -> None:
        # A worker that left the registry goes after the absent grace, and its channel is retired, not
        # closed: closing a channel cancels the streams it carries, and a worker also "leaves" when Redis
        # restarts empty and the worker has not re-registered yet, while it serves on perfectly well.
        now = time.monotonic()
        for worker_id, listed in list(self._entries.items()):
            if worker_id in records:
                listed.missing_since = None
            elif listed.missing_since is None:
                listed.missing_since = now
            elif now - listed.missing_since > self._absent_grace:
                self._retired.append((now, self._entries.pop(worker_id).client))
                self._left(worker_id)
        for worker_id, record in records.items():
            entry = self._entries.get(worker_id)
            if entry is None or entry.record.address != record.address:
                if entry is not None:
                    self._retired.append((now, entry.client))
                    self._left(worker_id)
                client = self._client(record.address)
                self._entries[worker_id] = _Entry(record, client)
                self._table = None
            else:
                if _routing_fields(entry.record) != _routing_fields(record):
                    self._table = None
                entry.record = record

    def _left(self, worker_id: str) -> None:
        self._table = None
        log.info("worker %s left the cluster view", worker_id)
        if self.on_leave is not None:
            self.on_leave(worker_id)

    def _client(self, address: str) -> WorkerClient:
        return WorkerClient(address, self._token, timeout_seconds=self._timeout,
                            channel_options=CHANNEL_OPTIONS, tls=self._tls)

    async def _poll(self, entry: _Entry) -> None:
        asked_at = time.monotonic()
        try:
            stats = await entry.client.stats()
        except (TimeoutError, HeteroserveError) as exc:
            log.debug("stats poll of %s failed: %r", entry.record.worker_id, exc)
            if entry.healthy:
                log.warning("worker %s failed its stats poll (%s): out of the candidate set",
                            entry.record.worker_id, exc)
                self._table = None
            entry.healthy = False
            return
        if not entry.healthy or bool(entry.stats and entry.stats.draining) != bool(stats.draining):
            self._table = None
        entry.stats, entry.reported_at, entry.healthy = stats, asked_at, True
        if self._table is not None and self._entries.get(entry.record.worker_id) is entry:
            self._table.set_load(entry.record.worker_id, self._state(entry).load)

    def _on_inflight(self, worker_id: str, routed_at: float, delta: int) -> None:
        """A request routed (+1) to or finished (-1) on `worker_id`: its load moves if the request is
        one its last report missed (routed after it), exactly as `InflightTracker.unreported` counts."""
        entry = self._entries.get(worker_id)
        if self._table is None or entry is None:
            return
        if entry.reported_at is None or routed_at > entry.reported_at:
            self._table.add_load(worker_id, delta)

    def mark_failed(self, worker_id: str) -> None:
        """Take `worker_id` out of the candidate set until its next successful poll."""
        entry = self._entries.get(worker_id)
        if entry is not None:
            if entry.healthy:
                self._table = None
            entry.healthy = False

    def client(self, worker_id: str) -> WorkerClient:
        entry = self._entries.get(worker_id)
        if entry is None:
            raise NotFoundError(f"no worker {worker_id!r}", field="worker")
        return entry.client

    def record(self, worker_id: str) -> WorkerRecord:
        entry = self._entries.get(worker_id)
        if entry is None:
            raise NotFoundError(f"no worker {worker_id!r}", field="worker")
        return entry.record

    def table(self) -> WorkerTable:
        """The router's view (module docstring): the same object until the membership changes, its
        loads current. O(1) per call; O(workers) once per membership change."""
        if self._table is None:
            self._table = WorkerTable.build(self.snapshot())
        return self._table

    def snapshot(self) -> tuple[WorkerState, ...]:
        """Every known worker (healthy or not) with current loads, sorted by id: O(workers), for status
        and admin readers; decisions use `table()`."""
        return tuple(self._state(e) for _, e in sorted(self._entries.items()))

    def _state(self, entry: _Entry) -> WorkerState:
        r, s = entry.record, entry.stats
        return WorkerState(worker_id=r.worker_id, address=r.address, model=r.model,
                           role=r.role,  # a Role: WorkerRecord validated it when it was read
                           pool=r.pool, node_type=r.node_type, device=r.device, healthy=entry.healthy,
                           draining=r.draining or bool(s and s.draining),
                           max_concurrency=r.max_num_seqs,
                           num_running=s.num_running if s is not None else 0,
                           num_waiting=s.num_waiting if s is not None else 0,
                           num_unreported=self._inflight.unreported(r.worker_id, entry.reported_at))


def _routing_fields(r: WorkerRecord) -> tuple[object, ...]:
    """What of a registry record the router's table holds (a heartbeat's other fields do not count)."""
    return (r.address, r.model, r.role, r.pool, r.node_type, r.device, r.draining, r.max_num_seqs)
