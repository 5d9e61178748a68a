"""What this gateway itself routed where: an approximate prefix table, as in SGLang's router.

KV events tell the exact truth but arrive late (and not every worker publishes them). The gateway
already knows which worker it sent each prompt to, so it records the prompt's block hashes against every
worker it dispatches the request to (as SGLang's and vllm-router's trees do): the first one, a retry, a
migration, both sides of P/D. Recording at dispatch lets a request that shares the prefix and arrives
while the first one still waits or prefills follow it: recorded only at the first token, such a request
was routed by load alone and missed (bench routing, 2026-12-07, session 5). `match()` then walks the
leading hashes of a new prompt and counts, per worker, the run of blocks it was sent before — the blocks
most likely still in its memory. Bounded LRU over hashes (`capacity`, default 200,000 ≈ 3.2 M tokens of
prompts); a worker that leaves is forgotten with `remove_worker`. The worker may have evicted a block
since: this is a routing hint, a wrong hint costs a cache miss, never a wrong answer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from cache.hashing import BlockHash
from control_plane.router import PrefixHoldings

K = TypeVar("K", bound=Hashable)


class RoutedPrefixes:
    """Not thread-safe: used from the gateway's event loop only."""

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._holders: OrderedDict[BlockHash, set[str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._holders)

    def record(self, worker_id: str, block_hashes: Sequence[BlockHash]) -> None:
        """Remember that `worker_id` computed (and so caches) these blocks. Evicts the least recent."""
        for h in block_hashes:
            holders = self._holders.get(h)
            if holders is None:
                self._holders[h] = {worker_id}
            else:
                holders.add(worker_id)
                self._holders.move_to_end(h)
        while len(self._holders) > self.capacity:
            self._holders.popitem(last=False)

    def remove_worker(self, worker_id: str) -> None:
        for h in [h for h, ws in self._holders.items() if worker_id in ws]:
            self._holders[h].discard(worker_id)
            if not self._holders[h]:
                del self._holders[h]

    def match(self, block_hashes: Sequence[BlockHash]) -> PrefixHoldings:
        runs: dict[str, int] = {}
        alive: set[str] | None = None
        for i, h in enumerate(block_hashes):
            holders = self._holders.get(h)
            if not holders:
                break
            alive = set(holders) if alive is None else alive & holders
            if not alive:
                break
            for w in alive:
                runs[w] = i + 1
        return PrefixHoldings(num_blocks=len(block_hashes), worker_blocks=runs)


def _longer(x: Mapping[K, int], y: Mapping[K, int]) -> dict[K, int]:
    return {k: max(x.get(k, 0), y.get(k, 0)) for k in {*x, *y}}


def merge(a: PrefixHoldings, b: PrefixHoldings) -> PrefixHoldings:
    """Per worker and tier, the longer run of the two."""
    return PrefixHoldings(num_blocks=max(a.num_blocks, b.num_blocks),
                          worker_blocks=_longer(a.worker_blocks, b.worker_blocks),
                          shared_blocks=_longer(a.shared_blocks, b.shared_blocks),
                          local_blocks=_longer(a.local_blocks, b.local_blocks))
