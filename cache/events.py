"""KV events: which worker stored or removed which blocks in which tier, as an ordered Redis Stream.

One stream entry is one batch from one worker: fields `w` (worker id), `t` (tier), `k` (kind: `s` stored,
`r` removed, `c` cleared = the worker dropped everything it had in that tier, e.g. on restart), `h` (the
16-byte block hashes, concatenated). Entries are appended with XADD MAXLEN ~ `max_stream_len`, so the
stream stays bounded; consumers that fall behind the trim recover from a snapshot (cache.index_sync).

`KVEventPublisher.publish()` only enqueues (safe from the store and from engine callbacks on the event
loop); a background task drains the queue with one pipelined XADD batch per wake-up. If Redis is down the
batch is dropped and counted (the index is a routing hint; a stale hint costs a miss, not correctness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cache.hashing import BlockHash
from cache.metrics import CacheMetrics

log = logging.getLogger(__name__)

EventKindCode = Literal["s", "r", "c"]
_KIND_CODES: dict[str, EventKindCode] = {"stored": "s", "removed": "r", "cleared": "c"}
_KIND_NAMES: dict[str, str] = {"s": "stored", "r": "removed", "c": "cleared"}
_HASH = 16


@dataclass(frozen=True)
class KVEvent:
    """One batch event. `kind` is "stored", "removed" or "cleared" (hashes empty)."""

    worker_id: str
    tier: str
    kind: str
    hashes: tuple[BlockHash, ...] = ()

    def fields(self) -> dict[bytes, bytes]:
        return {b"w": self.worker_id.encode(), b"t": self.tier.encode(),
                b"k": _KIND_CODES[self.kind].encode(), b"h": b"".join(self.hashes)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> KVEvent:
        """Decode a stream entry. Raises ValueError on a malformed entry."""
        code = fields[b"k"].decode()
        kind = _KIND_NAMES.get(code)
        raw = fields.get(b"h", b"")
        if kind is None or len(raw) % _HASH:
            raise ValueError(f"malformed KV event (kind {code!r}, {len(raw)} hash bytes)")
        hashes = tuple(BlockHash(raw[i:i + _HASH]) for i in range(0, len(raw), _HASH))
        return cls(fields[b"w"].decode(), fields[b"t"].decode(), kind, hashes)


@dataclass(frozen=True)
class EventStreamConfig:
    stream_key: str = "hs:kvevents:default"
    snapshot_key: str = "hs:kvindex:default"
    max_stream_len: int = 200_000

    def __post_init__(self) -> None:
        if self.max_stream_len < 100:
            raise ValueError(f"max_stream_len must be >= 100, got {self.max_stream_len}")


class KVEventPublisher:
    """Appends a worker's events to the stream. `start()` the drain task; `aclose()` flushes and stops it.

    `client` is a redis.asyncio client owned by the caller.
    """

    def __init__(self, client: Any, worker_id: str, config: EventStreamConfig | None = None,
                 metrics: CacheMetrics | None = None) -> None:
        self.client = client
        self.worker_id = worker_id
        self.config = config or EventStreamConfig()
        self._metrics = metrics
        self._queue: asyncio.Queue[KVEvent | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def publish(self, kind: str, tier: str, hashes: Sequence[BlockHash]) -> None:
        """Enqueue one event (no I/O). Must be called on the publisher's event loop thread."""
        if hashes or kind == "cleared":
            self._queue.put_nowait(KVEvent(self.worker_id, tier, kind, tuple(hashes)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"kv-events-{self.worker_id}")

    async def _drain(self) -> None:
        while True:
            event = await self._queue.get()
            batch = [event]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            await self.flush_events([e for e in batch if e is not None])
            if stop:
                return

    async def flush_events(self, events: Sequence[KVEvent]) -> None:
        """XADD `events` in one pipeline, in order. Errors are logged and counted, not raised."""
        if not events:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for event in events:
                pipe.xadd(self.config.stream_key, event.fields(),
                          maxlen=self.config.max_stream_len, approximate=True)
            await pipe.execute()
        except Exception as exc:  # any Redis failure: drop the batch, keep serving
            log.warning("dropped %d KV event(s): %s: %s", len(events), type(exc).__name__, exc)
            if self._metrics:
                self._metrics.errors.labels("events").inc()
            return
        if self._metrics:
            self._metrics.events_published.inc(len(events))

    async def aclose(self) -> None:
        """Flush what is queued and stop the drain task."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
