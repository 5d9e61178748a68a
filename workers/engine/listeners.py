"""What the engine tells the outside about its pool (the cache tiers and KV event publishers listen)."""

from __future__ import annotations

from typing import Protocol

from cache.hashing import BlockHash
from workers.engine.types import KVBlock


class BlockListener(Protocol):
    """Called on the engine thread after each step; implementations must be quick (enqueue, return).

    `on_blocks_stored`: full blocks newly registered in the pool (computed or imported), in chain order.
    `on_blocks_evicted`: cached blocks whose slot is being reused; their KV was copied out first, so a
    listener can write them back to a slower tier.
    """

    def on_blocks_stored(self, hashes: list[BlockHash]) -> None: ...

    def on_blocks_evicted(self, blocks: list[KVBlock]) -> None: ...
