"""The worker's link to the cluster KV cache: the tiered store (Redis, disk, ...) and the KV event stream.

Decides when each piece of `workers.kv.bridge` runs in a worker's life:

- `start()`: starts the event publisher, announces `cleared` for the pool (`device` tier: a fresh pool
  holds nothing), and registers a `KVWriteBack` engine listener: blocks the pool stores are published
  as `device` events, blocks it evicts are written down into the store.
- `publish(hashes)`: a prefill worker writes the prompt's blocks to the shared tiers (`shared_tiers`).
- `store`: the store, for `PrefixLoader`'s reads (read-through and the `shared` transfer path).
- `aclose()`: flushes the listener and the publisher, closes the store.

With no store, only events are published; with no publisher, only the store is used. Nothing here
raises for an unreachable Redis: the store returns misses and the publisher drops batches (counted).
"""

from __future__ import annotations

from collections.abc import Sequence

from cache.events import KVEventPublisher
from cache.hashing import BlockHash
from cache.store import TieredStore
from common.vocab import SHARED_TIERS, Tier
from workers.kv.bridge import POOL_TIER, KVEngine, KVWriteBack, publish_prompt_blocks


class WorkerKVCache:
    """Owns `store`, `publisher` and the publisher's Redis client (closes them in `aclose()`). Use from
    the worker's event loop."""

    def __init__(self, engine: KVEngine, store: TieredStore | None, publisher: KVEventPublisher | None,
                 shared_tiers: Sequence[Tier] = SHARED_TIERS) -> None:
        self._engine = engine
        self._store = store
        self._publisher = publisher
        self._shared_tiers = tuple(shared_tiers)
        # An empty store when there is none: KVWriteBack then publishes events only (no encoding).
        self._write_back = KVWriteBack(engine, store or TieredStore([]), publisher)

    @property
    def store(self) -> TieredStore | None:
        return self._store

    async def start(self) -> None:
        if self._publisher is not None:
            self._publisher.start()
            self._publisher.publish("cleared", POOL_TIER, [])
        self._write_back.start()
        self._engine.add_block_listener(self._write_back)

    async def publish(self, hashes: Sequence[BlockHash]) -> int:
        """Write the pool's leading blocks of `hashes` to the shared tiers; returns blocks written."""
        if self._store is None or not hashes:
            return 0
        return await publish_prompt_blocks(self._engine, self._store, hashes, tiers=self._shared_tiers)

    async def aclose(self) -> None:
        await self._write_back.aclose()
        if self._publisher is not None:
            await self._publisher.aclose()
            await self._publisher.client.aclose()
        if self._store is not None:
            await self._store.close()
