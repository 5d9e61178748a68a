"""The one interface every tier implements: bytes in, bytes out, keyed by block hash, batched.

Tiers know nothing about KV layout, checksums or each other: `TieredStore` verifies what they return
and moves blocks between them. A tier never raises for an unavailable backend on reads: it returns
misses and says so in its metrics (the store keeps serving from the other tiers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cache.hashing import BlockHash


class Evicted(NamedTuple):
    """A block a tier pushed out to make room. `data` is its bytes when the tier still held them in
    memory (so the store can write it one tier down), else None."""

    block_hash: BlockHash
    data: bytes | None


class PutResult(NamedTuple):
    """What a `put_many` did: the keys now stored, and the blocks pushed out to make room."""

    stored: list[BlockHash]
    evicted: list[Evicted]


class BlockTier:
    """Abstract base: subclasses implement the four batched methods; the single forms derive from them.

    `name` is the tier's metric label and event tier (memory / redis / disk).
    """

    name: str = "tier"

    async def contains_many(self, keys: Sequence[BlockHash]) -> list[bool]:
        """Whether each key is present. Does not change recency."""
        raise NotImplementedError

    async def get_many(self, keys: Sequence[BlockHash]) -> list[bytes | None]:
        """The stored bytes of each key, None for a miss. Counts as an access for eviction policies."""
        raise NotImplementedError

    async def put_many(self, items: Sequence[tuple[BlockHash, bytes]]) -> PutResult:
        """Store each (key, bytes), overwriting existing keys; returns what was stored and what was evicted
        to make room. Failures (backend down, disk full) drop the item and are counted, never raised."""
        raise NotImplementedError

    async def remove_many(self, keys: Sequence[BlockHash]) -> int:
        """Delete the keys; returns how many were present (best effort on remote tiers)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections and files. The tier must not be used afterwards."""

    async def contains(self, key: BlockHash) -> bool:
        return (await self.contains_many([key]))[0]

    async def get(self, key: BlockHash) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def put(self, key: BlockHash, data: bytes) -> PutResult:
        return await self.put_many([(key, data)])

    async def remove(self, key: BlockHash) -> bool:
        return await self.remove_many([key]) > 0
