"""Where the orchestrator learns which worker holds which prompt blocks.

`PrefixSource.match(block_hashes)` answers with a router `PrefixHoldings`. `NoPrefixIndex` knows
nothing (every worker holds 0 blocks): routing then falls back to load, plan weight and affinity.
`IndexPrefixSource` adapts the cache's `PrefixIndex` (fed from the workers' KV events by
`cache.index_sync.PrefixIndexFollower`): for every (owner, tier) the exact run of leading blocks it
holds; owner `SHARED` is the shared tier every worker reads, a worker's host-memory tier ("memory")
counts as its "device" (both are its own memory, loaded without a network read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from cache.hashing import BlockHash
from cache.prefix_index import SHARED, PrefixIndex
from control_plane.router import PrefixHoldings


class PrefixSource(Protocol):
    def match(self, block_hashes: Sequence[BlockHash]) -> PrefixHoldings:
        """Leading blocks of the prompt held per worker (memory) and per shared tier. No side effects."""
        ...


class NoPrefixIndex:
    def match(self, block_hashes: Sequence[BlockHash]) -> PrefixHoldings:
        return PrefixHoldings(num_blocks=len(block_hashes))


class IndexPrefixSource:
    """Reads the index returned by `index()` at each call (a follower may swap it on recovery)."""

    def __init__(self, index: Callable[[], PrefixIndex]) -> None:
        self._index = index

    def match(self, block_hashes: Sequence[BlockHash]) -> PrefixHoldings:
        runs = self._index().longest_prefix_per_tier(block_hashes) if block_hashes else {}
        memory: dict[str, int] = {}
        shared: dict[str, int] = {}
        local: dict[tuple[str, str], int] = {}
        for (owner, tier), blocks in runs.items():
            tier = "device" if tier == "memory" else tier
            if owner == SHARED:
                shared[tier] = max(shared.get(tier, 0), blocks)
            elif tier == "device":
                memory[owner] = max(memory.get(owner, 0), blocks)
            else:
                local[(owner, tier)] = max(local.get((owner, tier), 0), blocks)
        return PrefixHoldings(num_blocks=len(block_hashes), worker_blocks=memory, shared_blocks=shared,
                              local_blocks=local)
