"""Host-memory tier: a byte-capped dict evicting by policy (LRU by default)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from cache.hashing import BlockHash
from cache.metrics import CacheMetrics
from cache.tiers.base import BlockTier, Evicted, PutResult
from cache.tiers.policies import LocalIndex, make_policy


@dataclass(frozen=True)
class MemoryTierConfig:
    capacity_bytes: int = 1 << 30
    policy: str = "lru"

    def __post_init__(self) -> None:
        if self.capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {self.capacity_bytes}")
        make_policy(self.policy)


class MemoryTier(BlockTier):
    """Blocks in this process's memory. A block larger than the whole capacity is not stored."""

    name = "memory"

    def __init__(self, config: MemoryTierConfig | None = None, metrics: CacheMetrics | None = None) -> None:
        self.config = config or MemoryTierConfig()
        self._index = LocalIndex(make_policy(self.config.policy), self.config.capacity_bytes)
        self._data: dict[BlockHash, bytes] = {}
        self._metrics = metrics

    @property
    def total_bytes(self) -> int:
        return self._index.total_bytes

    def keys(self) -> list[BlockHash]:
        """Keys currently held (insertion order; a snapshot, for tests and stats)."""
        return list(self._index)

    async def contains_many(self, keys: Sequence[BlockHash]) -> list[bool]:
        return [k in self._data for k in keys]

    async def get_many(self, keys: Sequence[BlockHash]) -> list[bytes | None]:
        start = time.perf_counter()
        out = [self._data.get(k) for k in keys]
        for key, value in zip(keys, out, strict=True):
            if value is not None:
                self._index.touch(key)
        if self._metrics:
            hits = [v for v in out if v is not None]
            self._metrics.record_get(self.name, len(hits), len(out) - len(hits), sum(map(len, hits)),
                                     time.perf_counter() - start)
        return out

    async def put_many(self, items: Sequence[tuple[BlockHash, bytes]]) -> PutResult:
        start = time.perf_counter()
        evicted: list[Evicted] = []
        written = 0
        for key, data in items:
            if len(data) > self.config.capacity_bytes:
                continue
            self._index.remove(key)
            self._data.pop(key, None)
            for victim in self._index.victims_for(len(data)):
                evicted.append(Evicted(victim, self._data.pop(victim)))
            self._index.add(key, len(data))
            self._data[key] = data
            written += len(data)
        if self._metrics:
            self._metrics.record_put(self.name, written, time.perf_counter() - start)
            self._metrics.evictions.labels(self.name).inc(len(evicted))
            self._metrics.stored_bytes.labels(self.name).set(self._index.total_bytes)
        stored = [k for k in dict.fromkeys(k for k, _ in items) if k in self._data]
        return PutResult(stored, evicted)

    async def remove_many(self, keys: Sequence[BlockHash]) -> int:
        removed = 0
        for key in keys:
            if self._data.pop(key, None) is not None:
                self._index.remove(key)
                removed += 1
        if self._metrics:
            self._metrics.stored_bytes.labels(self.name).set(self._index.total_bytes)
        return removed
