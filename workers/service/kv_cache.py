"""The worker's link to the cluster KV cache: tiered store (Redis, disk, ...) and KV event stream.

Built on `workers.kv_bridge` (owned by the cache component); this class only decides when each piece
runs in a worker's life:

- `start()`: starts the event publisher, announces `cleared` for the device tier (a fresh pool holds
  nothing), and registers a `KVWriteBack` engine listener: blocks the pool stores are published as
  `device` events, blocks it evicts are written down into the store.
- `load_prefix(hashes)`: before a request runs, read-through of the store for the part of the prompt
  the pool lacks (every block verified; corrupt ones end the run and are recomputed).
- `publish(hashes)`: a prefill worker writes the prompt's blocks to the shared tiers (`shared_tiers`).
- `get_blocks(hashes)`: a decode worker reads the prompt's blocks from the store (`SharedKVTier`).
- `aclose()`: flushes the listener and the publisher, closes the store.

With no store, only events are published; with no publisher, only the store is used. Nothing here
raises for an unreachable Redis: the store returns misses and the publisher drops batches (counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cache.events import KVEventPublisher
from cache.hashing import BlockHash
from cache.store import TieredStore
from workers.engine.types import KVBlock
from workers.kv_bridge import (
    DEVICE_TIER,
    KVWriteBack,
    decode_blocks,
    load_cached_prefix,
    publish_prompt_blocks,
)

if TYPE_CHECKING:
    from workers.engine.async_engine import AsyncEngine

SHARED_TIERS = ("redis",)


class WorkerKVCache:
    """Owns `store`, `publisher` and the publisher's Redis client (closes them in `aclose()`). Use from
    the worker's event loop."""

    def __init__(self, engine: AsyncEngine, store: TieredStore | None, publisher: KVEventPublisher | None,
                 shared_tiers: Sequence[str] = SHARED_TIERS) -> None:
        self._engine = engine
        self._store = store
        self._publisher = publisher
        self._shared_tiers = tuple(shared_tiers)
        # An empty store when there is none: KVWriteBack then publishes events only (no encoding).
        self._write_back = KVWriteBack(engine, store or TieredStore([]), publisher)

    @property
    def has_store(self) -> bool:
        return self._store is not None

    async def start(self) -> None:
        if self._publisher is not None:
            self._publisher.start()
            self._publisher.publish("cleared", DEVICE_TIER, [])
        self._write_back.start()
        self._engine.add_block_listener(self._write_back)

    async def load_prefix(self, hashes: Sequence[BlockHash]) -> int:
        """Make the longest cached prefix of `hashes` resident; returns prompt tokens cached (a hint)."""
        if self._store is None or not hashes:
            return 0
        return await load_cached_prefix(self._engine, self._store, hashes)

    async def publish(self, hashes: Sequence[BlockHash]) -> int:
        """Write the pool's leading blocks of `hashes` to the shared tiers; returns blocks written."""
        if self._store is None or not hashes:
            return 0
        return await publish_prompt_blocks(self._engine, self._store, hashes, tiers=self._shared_tiers)

    async def get_blocks(self, hashes: Sequence[BlockHash]) -> list[KVBlock]:
        """The verified, decoded leading run of `hashes` found in the store (may be empty)."""
        if self._store is None:
            return []
        payloads = await self._store.get_prefix(list(hashes))
        return await asyncio.to_thread(decode_blocks, payloads, list(hashes), self._engine.model_id)

    async def aclose(self) -> None:
        await self._write_back.aclose()
        if self._publisher is not None:
            await self._publisher.aclose()
            await self._publisher.client.aclose()
        if self._store is not None:
            await self._store.close()
