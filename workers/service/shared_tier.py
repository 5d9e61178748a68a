"""The shared KV tier as the worker uses it: `KVBlock`s over `cache`'s `TieredStore` of encoded bytes.

Prefill workers publish a prompt's blocks (`put_blocks`, on `publish_to_shared_tier`); decode workers
read the longest leading run they can find (`get_blocks`, on `kv_source.shared_tier`). The store
verifies every block it returns (header, checksum, hash) and drops corrupt ones; decoding here checks
the model id as well. An unreachable Redis yields misses, never errors, so decode falls back to local
prefill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cache.config import CacheConfig, build_store
from cache.hashing import BlockHash
from cache.store import TieredStore
from cache.tiers import RedisTierConfig
from workers.engine.types import KVBlock
from workers.service.kv_wire import decode_block, encode_block


class StoreKVTier:
    """Implements `workers.service.kv_import.SharedKVTier` over a `TieredStore` (which it owns)."""

    def __init__(self, store: TieredStore, model_id: str) -> None:
        self._store = store
        self._model_id = model_id

    @classmethod
    async def redis(cls, url: str, model_id: str) -> StoreKVTier:
        """A shared tier in the Redis at `url` (no local memory or disk tier)."""
        store = await build_store(CacheConfig(memory=None, redis=RedisTierConfig(url=url)))
        return cls(store, model_id)

    async def get_blocks(self, hashes: Sequence[BlockHash]) -> list[KVBlock]:
        """The verified leading run of `hashes` the tier holds, decoded (may be empty)."""
        payloads = await self._store.get_prefix(list(hashes))
        return await asyncio.to_thread(
            lambda: [decode_block(p, h, self._model_id) for p, h in zip(payloads, hashes, strict=False)])

    async def put_blocks(self, blocks: Sequence[KVBlock]) -> None:
        """Store `blocks` (best effort: the store never raises for a tier that is down)."""
        items = await asyncio.to_thread(
            lambda: [(b.block_hash, encode_block(b, self._model_id)) for b in blocks])
        await self._store.put_many(items)

    async def close(self) -> None:
        await self._store.close()
