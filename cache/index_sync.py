"""Keeps a `PrefixIndex` in step with the KV event stream, and recovers it after a restart or a gap.

Algorithm:
1. `recover()`: load the snapshot (`snapshot_key`: a hash with fields `data` = `PrefixIndex.to_bytes()`
   and `id` = the last stream id it covers) if there is one, else start empty from id 0-0; then replay.
2. `poll_once()`: XREAD entries after `last_id` and apply them in order. Before reading, a gap check.
   The follower counts the entries it has covered (`seen_count`, = entries with id <= last_id). XINFO
   STREAM gives `entries-added` and `length` (Redis >= 7), so `entries-added - length` entries were
   trimmed; more trimmed than covered means entries we never saw are gone (on older Redis: the first
   entry's id is above `last_id`). The index is then rebuilt from the snapshot and replayed (counted in
   `heteroserve_cache_index_gaps_total`). If the snapshot itself is older than the trim, the rebuild is
   the best available (logged): blocks stored in the lost window are unknown until published again.
   (XDEL is never used on this stream; it would break the count.)
3. `snapshot()`: writes the current index with its `last_id` and `seen_count` (every
   `snapshot_interval_seconds` in
   `run()`). Several followers may write; any snapshot is consistent with its own id, so the last writer
   winning only costs replay time, never correctness.

Stream ids compare as (milliseconds, sequence) pairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from cache.events import EventStreamConfig, KVEvent
from cache.metrics import CacheMetrics
from cache.prefix_index import PrefixIndex
from common.vocab import SHARED_TIERS

log = logging.getLogger(__name__)
ZERO_ID = "0-0"


def parse_id(stream_id: str | bytes) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class PrefixIndexFollower:
    """Owns `index` updates. `client` is a redis.asyncio client owned by the caller."""

    def __init__(self, client: Any, config: EventStreamConfig | None = None,
                 metrics: CacheMetrics | None = None, shared_tiers: tuple[str, ...] = SHARED_TIERS,
                 snapshot_interval_seconds: float = 30.0, read_count: int = 1000) -> None:
        self.client = client
        self.config = config or EventStreamConfig()
        self.index = PrefixIndex(shared_tiers)
        self.last_id = ZERO_ID
        self.seen_count = 0
        self._metrics = metrics
        self._shared_tiers = shared_tiers
        self._snapshot_interval = snapshot_interval_seconds
        self._read_count = read_count
        self._removed: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def _load_snapshot(self) -> None:
        raw = await self.client.hgetall(self.config.snapshot_key)
        if raw and b"data" in raw and b"id" in raw:
            try:
                self.index = PrefixIndex.from_bytes(raw[b"data"], self._shared_tiers)
                self.last_id = raw[b"id"].decode()
                self.seen_count = int(raw.get(b"count", b"0"))
                for worker_id in self._removed:
                    self.index.remove_worker(worker_id)
                return
            except ValueError as exc:
                log.warning("ignoring unreadable prefix index snapshot: %s", exc)
        self.index = PrefixIndex(self._shared_tiers)
        self.last_id = ZERO_ID
        self.seen_count = 0

    async def recover(self) -> int:
        """Snapshot + replay. Returns the number of events replayed."""
        await self._load_snapshot()
        if await self._has_gap():
            if self._metrics:
                self._metrics.index_gaps.inc()
            log.warning("snapshot (at %s) is older than the stream's trim; blocks in the lost window are "
                        "unknown until published again", self.last_id)
        return await self._replay()

    async def _replay(self) -> int:
        total = 0
        while True:
            n = await self._read(block_ms=None)
            total += n
            if n < self._read_count:
                return total

    async def _has_gap(self) -> bool:
        try:
            info = await self.client.xinfo_stream(self.config.stream_key)
        except Exception:  # stream does not exist yet: nothing was trimmed
            return False
        added = info.get("entries-added")
        if added is not None:
            return int(added) - int(info["length"]) > self.seen_count
        first = info.get("first-entry")
        return bool(first) and parse_id(first[0]) > parse_id(self.last_id) and self.seen_count > 0

    async def poll_once(self, block_ms: int | None = None) -> int:
        """Apply new events (waiting up to `block_ms` for some); rebuilds on a gap. Returns events applied."""
        if await self._has_gap():
            if self._metrics:
                self._metrics.index_gaps.inc()
            log.warning("KV event stream trimmed past %s: rebuilding prefix index from snapshot",
                        self.last_id)
            await self._load_snapshot()
            if await self._has_gap():
                log.warning("snapshot (at %s) is older than the trim too; blocks in the lost window are "
                            "unknown until published again", self.last_id)
            return await self._replay()
        return await self._read(block_ms)

    async def _read(self, block_ms: int | None) -> int:
        reply = await self.client.xread({self.config.stream_key: self.last_id}, count=self._read_count,
                                        block=block_ms)
        n = 0
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                try:
                    self._apply(KVEvent.from_fields(fields))
                except (KeyError, ValueError) as exc:
                    log.warning("skipping malformed KV event %s: %s", entry_id, exc)
                self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                self.seen_count += 1
                n += 1
        return n

    async def snapshot(self) -> None:
        """Write the index and the stream id it covers."""
        await self.client.hset(self.config.snapshot_key,
                               mapping={"data": self.index.to_bytes(), "id": self.last_id,
                                        "count": str(self.seen_count)})

    def remove_worker(self, worker_id: str) -> int:
        """Drop a worker that left the registry. It stays dropped across snapshot rebuilds, and its
        later non-shared events are ignored, until it announces a fresh start (a `cleared` event)."""
        self._removed.add(worker_id)
        return self.index.remove_worker(worker_id)

    def _apply(self, event: KVEvent) -> None:
        if event.worker_id in self._removed and event.tier not in self.index.shared_tiers:
            if event.kind != "cleared":
                return
            self._removed.discard(event.worker_id)
        self.index.apply(event)

    def start(self, poll_block_ms: int = 200) -> None:
        """Run `recover()` then poll in a background task until `stop()`."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(poll_block_ms), name="prefix-index-follower")

    async def _run(self, poll_block_ms: int) -> None:
        last_snapshot = time.monotonic()
        recovered = False
        while not self._stopping.is_set():
            try:
                if not recovered:
                    await self.recover()
                    recovered = True
                await self.poll_once(block_ms=poll_block_ms)
                if time.monotonic() - last_snapshot >= self._snapshot_interval:
                    await self.snapshot()
                    last_snapshot = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: keep the index we have, retry
                log.warning("prefix index follower: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
