"""workers.kv between real engines (tiny model) and a real Redis-backed store: cross-worker reuse through
`fetch_prefix`, corruption -> recompute with identical tokens, write-back of evicted pool blocks, KV
events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cache.config import CacheConfig, build_store
from cache.events import EventStreamConfig, KVEventPublisher
from cache.hashing import BlockHash, hash_prompt_blocks
from cache.index_sync import PrefixIndexFollower
from cache.metrics import CacheMetrics
from cache.store import TieredStore
from cache.tiers import MemoryTierConfig, RedisTierConfig
from tests.cache.conftest import sample
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest, SamplingParams
from workers.kv.bridge import KVWriteBack, publish_prompt_blocks
from workers.kv.fetch import fetch_prefix
from workers.kv.sources import StoreSource

PROMPT = tuple((i * 37 + 11) % 1900 + 5 for i in range(85))  # 5 full blocks + 5 tokens


async def _generate(engine: AsyncEngine, prompt: tuple[int, ...], rid: str) -> tuple[list[int], int]:
    tokens, cached = [], 0
    request = EngineRequest(rid, prompt, SamplingParams(max_tokens=8, ignore_eos=True))
    async for event in engine.generate(request):
        cached = cached or event.num_cached_prompt_tokens
        if event.token_id is not None:
            tokens.append(event.token_id)
    return tokens, cached


@pytest.fixture
async def engines(tiny_model_dir: Path) -> AsyncIterator[Callable[..., AsyncEngine]]:
    started: list[AsyncEngine] = []

    def make(num_kv_blocks: int = 64) -> AsyncEngine:
        engine = AsyncEngine.from_config(EngineConfig(model_dir=tiny_model_dir, num_kv_blocks=num_kv_blocks))
        started.append(engine)
        return engine

    yield make
    for engine in started:
        await engine.stop()


async def load_cached_prefix(engine: AsyncEngine, store: TieredStore, hashes: list[BlockHash]) -> int:
    """Prompt tokens cached in `engine`'s pool after fetching PROMPT's prefix from `store`."""
    return (await fetch_prefix(engine, StoreSource(store), hashes, PROMPT)).num_tokens_cached


async def _redis_store(url: str, metrics: CacheMetrics | None = None) -> TieredStore:
    return await build_store(CacheConfig(memory=None, redis=RedisTierConfig(url=url, namespace="b")), metrics)


async def test_cross_worker_reuse_through_redis(engines: Callable[..., AsyncEngine], redis_url: str) -> None:
    a, b = engines(), engines()
    await a.start()
    await b.start()
    store_a, store_b = await _redis_store(redis_url), await _redis_store(redis_url)
    try:
        hashes = hash_prompt_blocks(PROMPT, a.hash_keys())
        assert hashes == hash_prompt_blocks(PROMPT, b.hash_keys())
        tokens_a, cached_a = await _generate(a, PROMPT, "a")
        assert cached_a == 0
        assert await publish_prompt_blocks(a, store_a, hashes) == 5
        assert await load_cached_prefix(b, store_b, hashes) == 80
        tokens_b, cached_b = await _generate(b, PROMPT, "b")
        assert cached_b == 80
        assert tokens_b == tokens_a
    finally:
        await store_a.close()
        await store_b.close()


async def test_corrupt_block_is_recomputed_with_identical_tokens(
        engines: Callable[..., AsyncEngine], redis_url: str) -> None:
    a, b = engines(), engines()
    await a.start()
    await b.start()
    metrics = CacheMetrics(__import__("prometheus_client").CollectorRegistry())
    store_a, store_b = await _redis_store(redis_url), await _redis_store(redis_url, metrics)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        hashes = hash_prompt_blocks(PROMPT, a.hash_keys())
        tokens_a, _ = await _generate(a, PROMPT, "a")
        await publish_prompt_blocks(a, store_a, hashes)
        key = store_a.tier("redis").key(hashes[2])  # type: ignore[attr-defined]
        value = bytearray(await raw.get(key))
        value[-100] ^= 0x01  # one flipped bit in the KV payload
        await raw.set(key, bytes(value))
        assert await load_cached_prefix(b, store_b, hashes) == 32  # blocks 0, 1 only
        assert sample(metrics, "heteroserve_cache_checksum_failures_total", tier="redis") == 1
        tokens_b, cached_b = await _generate(b, PROMPT, "b")
        assert cached_b == 32
        assert tokens_b == tokens_a
    finally:
        await raw.aclose()
        await store_a.close()
        await store_b.close()


async def test_write_back_of_evicted_blocks_and_events(
        engines: Callable[..., AsyncEngine], redis_url: str) -> None:
    small = engines(num_kv_blocks=8)  # 85-token prompt + 8 new tokens use 6 blocks: a second prompt evicts
    await small.start()
    store = await build_store(CacheConfig(memory=MemoryTierConfig(capacity_bytes=64 << 20)))
    client = aioredis.Redis.from_url(redis_url)
    stream = EventStreamConfig(stream_key="bridge-events", snapshot_key="bridge-snap")
    publisher = KVEventPublisher(client, "w1", stream)
    publisher.start()
    write_back = KVWriteBack(small, store, publisher)
    write_back.start()
    small.add_block_listener(write_back)
    try:
        hashes = hash_prompt_blocks(PROMPT, small.hash_keys())
        tokens_1, _ = await _generate(small, PROMPT, "r1")
        for shift in (1000, 500):  # two other prompts push the first one out of the 8-block pool
            await _generate(small, tuple((t + shift) % 1900 + 5 for t in PROMPT), f"other{shift}")
        await write_back.flush()
        assert write_back.num_written_back >= 5
        assert small.match_prefix(hashes) == 0  # the pool evicted the first prompt...
        assert await store.contains_many(hashes) == ["memory"] * 5  # ...and it went down a tier
        # the evicted prefix comes back from the store, and tokens are unchanged
        assert await load_cached_prefix(small, store, hashes) == 80
        tokens_2, cached = await _generate(small, PROMPT, "r3")
        assert tokens_2 == tokens_1 and cached == 80
        await write_back.flush()
        await publisher.aclose()
        follower = PrefixIndexFollower(client, stream)
        await follower.recover()
        match = follower.index.longest_prefix(hashes)
        assert match["w1"] == (5, "device")  # (blocks, slowest tier), the index's run of w1
    finally:
        await write_back.aclose()
        await publisher.aclose()
        await client.aclose()
        await store.close()


async def test_redis_down_worker_recomputes(engines: Callable[..., AsyncEngine], tmp_path: Path) -> None:
    from common.localredis import LocalRedis, RedisServerConfig

    server = LocalRedis(RedisServerConfig(data_dir=tmp_path)).start()
    a, b = engines(), engines()
    await a.start()
    await b.start()
    metrics = CacheMetrics(__import__("prometheus_client").CollectorRegistry())
    store_a = await _redis_store(server.url)
    store_b = await build_store(CacheConfig(memory=None, redis=RedisTierConfig(
        url=server.url, namespace="b", connect_timeout_seconds=0.2, socket_timeout_seconds=0.5)), metrics)
    try:
        hashes = hash_prompt_blocks(PROMPT, a.hash_keys())
        tokens_a, _ = await _generate(a, PROMPT, "a")
        await publish_prompt_blocks(a, store_a, hashes)
        server.stop()
        assert await load_cached_prefix(b, store_b, hashes) == 0
        assert sample(metrics, "heteroserve_cache_redis_up") == 0
        tokens_b, cached_b = await _generate(b, PROMPT, "b")
        assert (tokens_b, cached_b) == (tokens_a, 0)
    finally:
        server.stop()
        await store_a.close()
        await store_b.close()


async def test_write_through_listener_hands_blocks_to_another_engine(
        engines: Callable[..., AsyncEngine], redis_url: str) -> None:
    a, b = engines(), engines()
    await a.start()
    await b.start()
    store_a, store_b = await _redis_store(redis_url), await _redis_store(redis_url)
    listener = KVWriteBack(a, store_a, write_through_tiers=("redis",))
    listener.start()
    a.add_block_listener(listener)
    try:
        hashes = hash_prompt_blocks(PROMPT, a.hash_keys())
        tokens_a, _ = await _generate(a, PROMPT, "a")
        await listener.flush()
        assert await store_b.contains_many(hashes) == ["redis"] * 5  # no explicit publish needed
        assert await load_cached_prefix(b, store_b, hashes) == 80
        assert (await _generate(b, PROMPT, "b")) == (tokens_a, 80)
    finally:
        await listener.aclose()
        await store_a.close()
        await store_b.close()
