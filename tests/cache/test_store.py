"""TieredStore over real tiers: read-through, promotion, write-back, corruption, Redis down and back."""

from __future__ import annotations

from pathlib import Path

from cache.config import CacheConfig, build_store
from cache.metrics import CacheMetrics
from cache.store import StoreTier, TieredStore, TierRole
from cache.tiers import DiskTier, DiskTierConfig, MemoryTier, MemoryTierConfig, RedisTier, RedisTierConfig
from common.localredis import LocalRedis, RedisServerConfig
from tests.cache.conftest import make_blocks, sample


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def publish(self, kind: str, tier: str, hashes: list[bytes]) -> None:
        self.events.append((kind, tier, len(hashes)))


async def _store(tmp_path: Path, redis_url: str, metrics: CacheMetrics, mem_blocks: int = 100,
                 events: Recorder | None = None) -> TieredStore:
    size = len(make_blocks(1)[0][1])
    config = CacheConfig(memory=MemoryTierConfig(capacity_bytes=mem_blocks * size),
                         redis=RedisTierConfig(url=redis_url, namespace="s"),
                         disk=DiskTierConfig(root=tmp_path))
    return await build_store(config, metrics, events)


async def test_write_through_and_write_back(tmp_path: Path, redis_url: str, metrics: CacheMetrics) -> None:
    rec = Recorder()
    store = await _store(tmp_path, redis_url, metrics, mem_blocks=2, events=rec)
    try:
        blocks = make_blocks(3)
        await store.put_many(blocks)
        keys = [h for h, _ in blocks]
        assert await store.tier("memory").contains_many(keys) == [False, True, True]
        assert await store.tier("redis").contains_many(keys) == [True] * 3
        assert await store.tier("disk").contains_many(keys) == [True, False, False]  # written back
        assert ("removed", "memory", 1) in rec.events and ("stored", "disk", 1) in rec.events
        assert await store.get_prefix(keys) == [d for _, d in blocks]
    finally:
        await store.close()


async def test_read_through_promotes_from_disk(tmp_path: Path, metrics: CacheMetrics) -> None:
    memory, disk = MemoryTier(), await DiskTier.open(DiskTierConfig(root=tmp_path), metrics)
    store = TieredStore([StoreTier(memory, TierRole()), StoreTier(disk, TierRole(write="back"))], metrics)
    blocks = make_blocks(3)
    await disk.put_many(blocks)
    assert await store.get_many([h for h, _ in blocks]) == [d for _, d in blocks]
    assert await memory.contains_many([h for h, _ in blocks]) == [True] * 3
    assert sample(metrics, "heteroserve_cache_hits_total", tier="disk") == 3


async def test_get_prefix_stops_at_first_gap(tmp_path: Path, redis_url: str, metrics: CacheMetrics) -> None:
    store = await _store(tmp_path, redis_url, metrics)
    try:
        blocks = make_blocks(4)
        await store.put_many([blocks[0], blocks[1], blocks[3]])
        assert await store.get_prefix([h for h, _ in blocks]) == [blocks[0][1], blocks[1][1]]
        assert await store.get_prefix([blocks[2][0]]) == []
    finally:
        await store.close()


async def test_corrupt_block_in_redis_is_dropped_and_counted(redis_url: str, metrics: CacheMetrics) -> None:
    import redis.asyncio as aioredis

    tier = RedisTier(RedisTierConfig(url=redis_url, namespace="c"), metrics)
    store = TieredStore([StoreTier(tier, TierRole())], metrics)
    blocks = make_blocks(3)
    await store.put_many(blocks)
    raw = aioredis.Redis.from_url(redis_url)
    bad = bytearray(blocks[1][1])
    bad[len(bad) // 2] ^= 0xFF
    await raw.set(tier.key(blocks[1][0]), bytes(bad))
    assert await store.get_prefix([h for h, _ in blocks]) == [blocks[0][1]]
    assert sample(metrics, "heteroserve_cache_checksum_failures_total", tier="redis") == 1
    assert await raw.exists(tier.key(blocks[1][0])) == 0  # dropped, never used
    await raw.aclose()
    await store.close()


async def test_corrupt_block_on_disk_is_dropped_and_counted(tmp_path: Path, metrics: CacheMetrics) -> None:
    disk = await DiskTier.open(DiskTierConfig(root=tmp_path), metrics)
    store = TieredStore([StoreTier(disk, TierRole())], metrics)
    blocks = make_blocks(2)
    await store.put_many(blocks)
    disk.path(blocks[0][0]).write_bytes(blocks[1][1])  # another block's valid bytes under the wrong name
    assert await store.get_many([h for h, _ in blocks]) == [None, blocks[1][1]]
    assert sample(metrics, "heteroserve_cache_checksum_failures_total", tier="disk") == 1
    assert not disk.path(blocks[0][0]).exists()


async def test_redis_down_serves_misses_then_recovers(tmp_path: Path, metrics: CacheMetrics) -> None:
    server = LocalRedis(RedisServerConfig(data_dir=tmp_path / "r")).start()
    port = server.port
    tier = RedisTier(RedisTierConfig(url=server.url, namespace="d", retry_interval_seconds=0.2,
                                     connect_timeout_seconds=0.2, socket_timeout_seconds=0.5), metrics)
    store = TieredStore([StoreTier(MemoryTier(), TierRole()), StoreTier(tier, TierRole(promote=False))],
                        metrics)
    blocks = make_blocks(2)
    try:
        await store.put_many(blocks[:1])
        server.stop()
        await store.put_many(blocks[1:])  # memory still takes it; redis drops it
        await store.tier("memory").remove_many([blocks[0][0]])
        assert await store.get_many([h for h, _ in blocks]) == [None, blocks[1][1]]
        assert sample(metrics, "heteroserve_cache_redis_up") == 0
        assert sample(metrics, "heteroserve_cache_errors_total", tier="redis") >= 1
        assert not tier.up
        server = LocalRedis(RedisServerConfig(data_dir=tmp_path / "r", port=port)).start()
        import asyncio

        await asyncio.sleep(0.25)
        await store.put_many(blocks[:1])
        assert await tier.get(blocks[0][0]) == blocks[0][1]
        assert tier.up and sample(metrics, "heteroserve_cache_redis_up") == 1
    finally:
        await store.close()
        server.stop()


async def test_tier_encoding_zlib_and_int8(tmp_path: Path) -> None:
    import numpy as np

    from cache.serde import SerdeOptions, decode_block

    zipped = await DiskTier.open(DiskTierConfig(root=tmp_path, namespace="z"))
    lossy = MemoryTier()
    store = TieredStore([StoreTier(zipped, TierRole(encoding=SerdeOptions(zlib_level=6))),
                         StoreTier(lossy, TierRole(encoding=SerdeOptions(int8=True)))])
    blocks = make_blocks(2)
    await store.put_many(blocks)
    original = decode_block(blocks[0][1]).array
    from_zip = decode_block((await zipped.get(blocks[0][0])) or b"")
    np.testing.assert_array_equal(from_zip.array, original)  # lossless
    from_int8 = decode_block((await lossy.get(blocks[0][0])) or b"")
    assert from_int8.array.dtype == np.float32
    assert np.max(np.abs(from_int8.array - original)) <= np.abs(original).max() / 127
    assert len((await lossy.get(blocks[0][0])) or b"") < len(blocks[0][1]) / 2  # head_dim 8: scales cost
