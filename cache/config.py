"""One frozen configuration for the cache of a process, and the factory that builds its store.

Default layout (LMCache-like): memory (write-through, promote), Redis (write-through, shared, no
promotion from disk), disk (write-back: receives what the memory tier evicts). Any tier may be left out
(None). Build from YAML/JSON at the process edge with `common.config.build(CacheConfig, mapping)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cache.metrics import CacheMetrics
from cache.store import EventSink, StoreTier, TieredStore, TierRole
from cache.tiers import DiskTier, DiskTierConfig, MemoryTier, MemoryTierConfig, RedisTier, RedisTierConfig


@dataclass(frozen=True)
class CacheConfig:
    memory: MemoryTierConfig | None = field(default_factory=MemoryTierConfig)
    redis: RedisTierConfig | None = None
    disk: DiskTierConfig | None = None
    memory_role: TierRole = field(default_factory=lambda: TierRole(write="through", promote=True))
    redis_role: TierRole = field(default_factory=lambda: TierRole(write="through", promote=False))
    # the disk tier verifies blocks itself, in its read thread (DiskTierConfig.verify)
    disk_role: TierRole = field(default_factory=lambda: TierRole(write="back", promote=False, verify=False))


async def build_store(config: CacheConfig, metrics: CacheMetrics | None = None,
                      events: EventSink | None = None) -> TieredStore:
    """The TieredStore for `config` (opens the disk tier, which rescans its directory)."""
    tiers: list[StoreTier] = []
    if config.memory is not None:
        tiers.append(StoreTier(MemoryTier(config.memory, metrics), config.memory_role))
    if config.redis is not None:
        tiers.append(StoreTier(RedisTier(config.redis, metrics), config.redis_role))
    if config.disk is not None:
        tiers.append(StoreTier(await DiskTier.open(config.disk, metrics), config.disk_role))
    return TieredStore(tiers, metrics, events)
