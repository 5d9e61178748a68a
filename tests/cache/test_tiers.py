"""Every tier round-trips real bytes; local tiers evict in exact policy order; disk survives restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache.metrics import CacheMetrics
from cache.tiers import (
    BlockTier,
    DiskTier,
    DiskTierConfig,
    MemoryTier,
    MemoryTierConfig,
    RedisTier,
    RedisTierConfig,
)
from tests.cache.conftest import make_blocks, sample


async def _round_trip(tier: BlockTier) -> None:
    blocks = make_blocks(4)
    result = await tier.put_many(blocks)
    assert result.stored == [h for h, _ in blocks]
    keys = [h for h, _ in blocks]
    assert await tier.get_many(keys) == [d for _, d in blocks]
    assert await tier.contains_many(keys) == [True] * 4
    assert await tier.remove(keys[1])
    assert await tier.get(keys[1]) is None
    assert await tier.contains_many(keys) == [True, False, True, True]


async def test_memory_round_trip(metrics: CacheMetrics) -> None:
    await _round_trip(MemoryTier(metrics=metrics))
    assert sample(metrics, "heteroserve_cache_hits_total", tier="memory") == 4


async def test_redis_round_trip(redis_url: str, metrics: CacheMetrics) -> None:
    tier = RedisTier(RedisTierConfig(url=redis_url, namespace="t"), metrics)
    try:
        await _round_trip(tier)
        assert sample(metrics, "heteroserve_cache_misses_total", tier="redis") == 1
        assert sample(metrics, "heteroserve_cache_redis_up") == 1
    finally:
        await tier.close()


async def test_redis_namespaces_do_not_collide(redis_url: str) -> None:
    a = RedisTier(RedisTierConfig(url=redis_url, namespace="a"))
    b = RedisTier(RedisTierConfig(url=redis_url, namespace="b"))
    try:
        [(h, data)] = make_blocks(1)
        await a.put(h, data)
        assert await b.get(h) is None and await a.get(h) == data
    finally:
        await a.close()
        await b.close()


async def test_disk_round_trip(tmp_path: Path) -> None:
    await _round_trip(await DiskTier.open(DiskTierConfig(root=tmp_path)))


@pytest.mark.parametrize(("policy", "expected"), [("lru", [1, 3]), ("fifo", [0, 1]), ("lfu", [1, 3])])
async def test_memory_eviction_order_is_exact(policy: str, expected: list[int]) -> None:
    blocks = make_blocks(6)
    size = len(blocks[0][1])
    tier = MemoryTier(MemoryTierConfig(capacity_bytes=4 * size, policy=policy))
    await tier.put_many(blocks[:4])
    await tier.get_many([blocks[0][0], blocks[2][0]])  # 0 and 2 become recent / hit once
    await tier.get(blocks[2][0])
    r1 = await tier.put(*blocks[4])
    r2 = await tier.put(*blocks[5])
    evicted = [e.block_hash for e in r1.evicted + r2.evicted]
    assert evicted == [blocks[i][0] for i in expected]
    assert all(e.data is not None for e in r1.evicted + r2.evicted)


async def test_disk_eviction_order_and_restart(tmp_path: Path, metrics: CacheMetrics) -> None:
    blocks = make_blocks(5)
    size = len(blocks[0][1])
    config = DiskTierConfig(root=tmp_path, capacity_bytes=3 * size)
    tier = await DiskTier.open(config, metrics)
    await tier.put_many(blocks[:3])
    await tier.get(blocks[0][0])  # 0 recent -> 1 is the LRU
    result = await tier.put(*blocks[3])
    assert [e.block_hash for e in result.evicted] == [blocks[1][0]]
    assert not tier.path(blocks[1][0]).exists()
    assert sample(metrics, "heteroserve_cache_evictions_total", tier="disk") == 1
    # restart: rescan finds exactly the survivors, with their bytes
    (tier.path(blocks[0][0]).parent / "junk.kv.tmp.1").write_bytes(b"partial")
    again = await DiskTier.open(config)
    keys = [h for h, _ in blocks[:4]]
    assert await again.contains_many(keys) == [True, False, True, True]
    assert await again.get(blocks[3][0]) == blocks[3][1]
    assert again.total_bytes == 3 * size
    assert not list(tmp_path.rglob("*.tmp.*"))


async def test_disk_write_failure_evicts_and_keeps_serving(tmp_path: Path, metrics: CacheMetrics) -> None:
    blocks = make_blocks(3)
    tier = await DiskTier.open(DiskTierConfig(root=tmp_path, enospc_evict_fraction=0.5), metrics)
    await tier.put_many(blocks[:2])
    blocker = tier.path(blocks[2][0]).parent
    if blocker.exists():
        pytest.skip("hash shard directory collides with an earlier block")
    blocker.write_bytes(b"")  # a file where the shard directory should be: every write fails (OSError)
    result = await tier.put(*blocks[2])
    assert result.stored == []
    assert sample(metrics, "heteroserve_cache_errors_total", tier="disk") == 1
    assert [e.block_hash for e in result.evicted] == [blocks[0][0]]  # freed half, retried once
    assert await tier.get(blocks[1][0]) == blocks[1][1]  # still serving
    blocker.unlink()
    assert (await tier.put(*blocks[2])).stored == [blocks[2][0]]


async def test_redis_refusing_writes_is_counted_not_raised(tmp_path: Path, metrics: CacheMetrics) -> None:
    import redis as sync_redis

    from common.localredis import LocalRedis, RedisServerConfig

    with LocalRedis(RedisServerConfig(data_dir=tmp_path)) as server:
        admin = sync_redis.Redis.from_url(server.url)
        admin.config_set("maxmemory-policy", "noeviction")
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + 600_000)  # room for a few ~130 KiB blocks, not 20
        admin.close()
        tier = RedisTier(RedisTierConfig(url=server.url, namespace="oom"), metrics)
        try:
            blocks = make_blocks(20, shape=(4, 2, 4, 16, 64))  # ~130 KiB each
            result = await tier.put_many(blocks)
            assert 0 < len(result.stored) < 20  # exactly the SETs Redis accepted before it was full
            assert await tier.contains_many([h for h, _ in blocks]) == [
                h in result.stored for h, _ in blocks]
            assert sample(metrics, "heteroserve_cache_errors_total", tier="redis") == 1
            assert tier.up and sample(metrics, "heteroserve_cache_redis_up") == 1
        finally:
            await tier.close()
