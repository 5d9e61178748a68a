"""The engine side of the KV path: what `workers.kv` needs from an engine, and the engine's pool joined
to a `cache.store.TieredStore`.

- `KVEngine`: the part of `workers.engine.async_engine.AsyncEngine` the kv package calls (structural,
  so tests and benchmarks can pass any engine with these members).
- `await publish_prompt_blocks(engine, store, hashes, tiers)`: the prefill role writes the prompt's
  blocks to the shared tier after prefill, so a decode worker's `fetch_prefix` finds them.
- `KVWriteBack(engine, store, publisher)`: an engine block listener. Blocks evicted from the pool are
  encoded and written down into the store (so they go to Redis / disk instead of being lost); blocks
  stored in the pool are published as `device` KV events and, with `write_through_tiers`, also
  exported and written to those tiers (P/D handoff without an explicit publish). The engine calls it
  on its own thread: it only enqueues (a thread-safe hop to the event loop); one asyncio task does the
  encoding (in a thread) and the I/O. `start()` / `aclose()` own that task.

Reading KV back into the pool is `workers.kv.fetch.fetch_prefix`, the one way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Sequence
from typing import Protocol

from cache.hashing import BlockHash, HashKeys
from cache.store import EventSink, TieredStore
from common.vocab import SHARED_TIERS, Tier
from workers.engine.listeners import BlockListener
from workers.engine.types import KVBlock
from workers.kv.wire import encode_blocks

log = logging.getLogger(__name__)
POOL_TIER: Tier = "device"  # the engine's own pool, as KV events name it


class KVEngine(Protocol):
    """The part of `workers.engine.async_engine.AsyncEngine` the kv package uses."""

    model_id: str
    block_size: int

    def hash_keys(self, adapter: str = "", tenant_salt: str = "") -> HashKeys: ...

    def match_prefix(self, hashes: Sequence[BlockHash]) -> int: ...

    async def export_blocks(self, hashes: Sequence[BlockHash]) -> list[KVBlock]: ...

    async def import_blocks(self, blocks: Sequence[KVBlock]) -> int: ...

    def add_block_listener(self, listener: BlockListener) -> None: ...


async def publish_prompt_blocks(engine: KVEngine, store: TieredStore, hashes: Sequence[BlockHash],
                                tiers: Collection[Tier] = SHARED_TIERS) -> int:
    """Write the pool's leading blocks of `hashes` to the store tiers named in `tiers` (default the
    shared tiers). Returns the number of blocks written (0 if none are in the pool)."""
    blocks = await engine.export_blocks(hashes)
    if not blocks:
        return 0
    items = await asyncio.to_thread(encode_blocks, blocks, engine.model_id)
    await store.put_many(items, only=tiers)
    return len(items)


class KVWriteBack:
    """Engine block listener: evicted pool blocks go down into the store; stored ones are published.

    `publisher` (a KV event publisher, optional) receives `device` stored/removed events.
    `write_through_tiers` (optional) names store tiers that get every block the pool stores.
    """

    def __init__(self, engine: KVEngine, store: TieredStore, publisher: EventSink | None = None,
                 write_through_tiers: Collection[Tier] = ()) -> None:
        self.engine = engine
        self.store = store
        self.publisher = publisher
        self.write_through_tiers = tuple(write_through_tiers)
        self._queue: asyncio.Queue[tuple[str, object] | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.num_written_back = 0

    def start(self) -> None:
        """Start the I/O task on the running loop. Register with `engine.add_block_listener(self)`."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._drain(), name="kv-write-back")

    # ---- engine thread: enqueue only ---------------------------------------------------------
    def _enqueue(self, item: tuple[str, object]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody to write to any more
                self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def on_blocks_stored(self, hashes: list[BlockHash]) -> None:
        self._enqueue(("stored", list(hashes)))

    def on_blocks_evicted(self, blocks: list[KVBlock]) -> None:
        self._enqueue(("evicted", list(blocks)))

    # ---- event loop ---------------------------------------------------------------------------
    async def _drain(self) -> None:
        while (item := await self._queue.get()) is not None:
            try:
                await self._handle(*item)
            except Exception:  # keep the listener alive whatever one batch does
                log.exception("KV write-back of a %s batch failed", item[0])

    async def _handle(self, kind: str, payload: object) -> None:
        if isinstance(payload, asyncio.Future):  # a flush marker: everything before it is done
            payload.set_result(None)
            return
        assert isinstance(payload, list), f"bad write-back item {kind!r}: enqueue only lists"
        if kind == "evicted":
            blocks = [b for b in payload if isinstance(b, KVBlock)]
            if self.publisher:
                self.publisher.publish("removed", POOL_TIER, [b.block_hash for b in blocks])
            if not self.store.tiers:  # nowhere to write: skip the encoding
                return
            items = await asyncio.to_thread(encode_blocks, blocks, self.engine.model_id)
            await self.store.put_many(items)
            self.num_written_back += len(items)
            return
        hashes = [BlockHash(h) for h in payload if isinstance(h, bytes)]
        if self.publisher:
            self.publisher.publish("stored", POOL_TIER, hashes)
        if self.write_through_tiers:
            blocks = await self.engine.export_blocks(hashes)
            items = await asyncio.to_thread(encode_blocks, blocks, self.engine.model_id)
            await self.store.put_many(items, only=self.write_through_tiers)

    async def flush(self) -> None:
        """Wait until everything enqueued so far is handled (tests, drain)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("flush", done))
        await done

    async def aclose(self) -> None:
        """Handle what is queued, then stop the task."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
        self._task = None
