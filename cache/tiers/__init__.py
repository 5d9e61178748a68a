"""Tiers: bytes by block hash behind one small async interface (`BlockTier`), plus eviction policies."""

from cache.tiers.base import BlockTier, Evicted, PutResult
from cache.tiers.disk import DiskTier, DiskTierConfig
from cache.tiers.memory import MemoryTier, MemoryTierConfig
from cache.tiers.policies import FIFOPolicy, LFUPolicy, LRUPolicy, make_policy
from cache.tiers.redis_tier import RedisTier, RedisTierConfig

__all__ = [
           "BlockTier",
           "DiskTier",
           "DiskTierConfig",
           "Evicted",
           "FIFOPolicy",
           "LFUPolicy",
           "LRUPolicy",
           "MemoryTier",
           "MemoryTierConfig",
           "PutResult",
           "RedisTier",
           "RedisTierConfig",
           "make_policy",
]
