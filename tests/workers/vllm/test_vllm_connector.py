"""The heteroserve KV connector between two real vLLM workers sharing a Redis tier (one pair per
module): cross-worker prefix reuse and P/D handoff keep tokens equal and move exactly the prompt's
page-aligned blocks; a corrupt block ends the loaded run (the rest is computed, tokens still equal);
a store that cannot be reached is a miss, never an error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cache.hashing import HashKeys, hash_prompt_blocks
from common.localredis import LocalRedis, RedisServerConfig, free_port
from heteroserve.v1 import common_pb2, worker_pb2
from tests.control_plane.gateway.gateway_procs import CLUSTER_TOKEN
from tests.workers.vllm.vllm_procs import VLLMWorker, start_together, vllm_worker_args
from workerrpc.client import WorkerClient

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]
KEYS = HashKeys("tiny", layout="float32:b16:l2:h2:d32")
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(RedisServerConfig(data_dir=tmp_path_factory.mktemp("tier-redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(tiny_model_dir: Path, tier: LocalRedis) -> Iterator[list[VLLMWorker]]:
    workers = start_together([vllm_worker_args(tiny_model_dir, None, f"kv-{i}", "--shared-tier-url",
                                               tier.url) for i in range(2)])
    yield workers
    for worker in workers:
        worker.stop()
        print(f"--- {worker.worker_id} stderr (tail)\n{worker.stderr[-3000:]}")  # shown when a test failed


def _prompt(seed: int, n: int = 200) -> list[int]:
    return [(seed * 7919 + i * 104729) % 2000 + 5 for i in range(n)]


async def _generate(address: str, prompt: list[int]) -> tuple[list[int], int]:
    """(tokens, cached prompt tokens) of a greedy Generate."""
    async with WorkerClient(address, CLUSTER_TOKEN) as client:
        request = worker_pb2.GenerateRequest(request_id=f"g{time.monotonic_ns()}", prompt_token_ids=prompt,
                                             sampling=common_pb2.SamplingParams(max_tokens=MAX_TOKENS))
        chunks = [c async for c in client.generate(request)]
    return [t for c in chunks for t in c.token_ids], chunks[0].cached_prompt_tokens


def _tier_keys(url: str) -> set[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return set(client.keys("hs:kv:default:*"))
    finally:
        client.close()


def _key(block_hash: bytes) -> bytes:
    return b"hs:kv:default:" + block_hash.hex().encode()


async def test_second_worker_reuses_the_prefix_the_first_computed(pair: list[VLLMWorker],
                                                                   tier: LocalRedis) -> None:
    prompt = _prompt(1)
    first, cached_first = await _generate(pair[0].address, prompt)
    hashes = hash_prompt_blocks(prompt, KEYS)
    assert cached_first == 0
    assert {_key(h) for h in hashes} <= _tier_keys(tier.url)  # all 12 full blocks of the prompt stored
    second, cached_second = await _generate(pair[1].address, prompt)
    assert second == first
    assert cached_second == 192  # (200 - 1) // 32 * 32: whole vLLM pages, the last token computed


async def test_a_corrupt_block_ends_the_loaded_run(pair: list[VLLMWorker], tier: LocalRedis) -> None:
    prompt = _prompt(2)
    first, _ = await _generate(pair[0].address, prompt)
    hashes = hash_prompt_blocks(prompt, KEYS)
    client = redis.Redis.from_url(tier.url)
    try:
        data = bytearray(client.get(_key(hashes[4])))  # cluster block 4 = the first half of page 2
        data[-20] ^= 0xFF
        client.set(_key(hashes[4]), bytes(data))
    finally:
        client.close()
    second, cached = await _generate(pair[1].address, prompt)
    assert second == first  # never a wrong token
    assert cached == 64  # pages 0 and 1 loaded; from the corrupt block on, computed


async def test_prefill_then_decode_on_another_worker_through_the_tier(pair: list[VLLMWorker]) -> None:
    prompt = _prompt(4)
    async with WorkerClient(pair[0].address, CLUSTER_TOKEN) as client:
        prefill = await client.prefill(worker_pb2.PrefillRequest(
            request_id="pd-1", prompt_token_ids=prompt, publish_to_shared_tier=True,
            sampling=common_pb2.SamplingParams(max_tokens=MAX_TOKENS)))
    first = list(prefill.first.token_ids)
    assert len(first) == 1
    async with WorkerClient(pair[1].address, CLUSTER_TOKEN) as client:
        chunks = [c async for c in client.decode(worker_pb2.DecodeRequest(
            request_id="pd-1", prompt_token_ids=prompt, generated_token_ids=first,
            sampling=common_pb2.SamplingParams(max_tokens=MAX_TOKENS),
            kv_source=worker_pb2.KVSource(shared_tier=True)))]
    decoded = first + [t for c in chunks for t in c.token_ids]
    expected, _ = await _generate(pair[0].address, prompt)  # A's own greedy answer (prefix cached there)
    assert decoded == expected
    assert chunks[0].cached_prompt_tokens == 192  # the prompt's pages came from the tier


def test_an_unreachable_store_is_a_miss_not_an_error() -> None:
    from cache.config import CacheConfig
    from cache.tiers import RedisTierConfig
    from workers.vllm.store_client import StoreClient

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = StoreClient(CacheConfig(memory=None, redis=RedisTierConfig(url=url)), timeout_seconds=5.0)
    try:
        hashes = hash_prompt_blocks(_prompt(5), KEYS)
        start = time.monotonic()
        assert client.get_prefix(hashes) == []
        client.put_many([(hashes[0], b"not even a block")])  # dropped, logged, no exception
        assert time.monotonic() - start < 10
    finally:
        client.close()
