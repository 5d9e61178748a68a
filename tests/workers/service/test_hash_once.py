"""Each request's prompt is hashed exactly once inside a worker, whichever RPC and KV path it takes.

Two in-process workers (real engines, real gRPC on loopback, a real Redis as their shared tier) each
get a counting hasher through `WorkerServer(hash_prompt=...)`; the engine's own use of the carried
hashes is proven in tests/workers/engine/test_block_hashes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cache.config import CacheConfig
from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from cache.tiers import RedisTierConfig
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.client import WorkerClient
from workers.config import WorkerConfig
from workers.engine.async_engine import AsyncEngine
from workers.service.server import WorkerServer, build_kv_cache, engine_config

TOKEN = "hash-once-token"
PROMPTS = {name: [(k * i + 3) % 2000 + 4 for i in range(40)]  # 2 full blocks + 8 tokens each
           for name, k in (("generate", 7), ("peer", 11), ("shared", 13), ("session", 17))}


class CountingHasher:
    """`cache.hashing.hash_prompt_blocks`, recording the tokens of every call."""

    def __init__(self) -> None:
        self.prompts: list[tuple[int, ...]] = []

    def __call__(self, token_ids: Sequence[int], keys: HashKeys, block_size: int) -> list[BlockHash]:
        self.prompts.append(tuple(token_ids))
        return hash_prompt_blocks(token_ids, keys, block_size)


async def _server(model_dir: Path, worker_id: str, redis_url: str, hasher: CountingHasher) -> WorkerServer:
    cache = CacheConfig(memory=None, redis=RedisTierConfig(url=redis_url, namespace="hash-once"))
    config = WorkerConfig(worker_id=worker_id, model_dir=model_dir, cluster_token=TOKEN, kv_cache_mb=8,
                          cache=cache)
    engine = AsyncEngine.from_config(engine_config(config))
    return WorkerServer(config, engine, registry=CollectorRegistry(), hash_prompt=hasher,
                        kv_cache=await build_kv_cache(config, engine))


@pytest.fixture
async def pair(tiny_model_dir: Path, redis_url: str
               ) -> AsyncIterator[tuple[WorkerServer, CountingHasher, WorkerServer, CountingHasher]]:
    hasher_a, hasher_b = CountingHasher(), CountingHasher()
    a = await _server(tiny_model_dir, "hash-a", redis_url, hasher_a)
    b = await _server(tiny_model_dir, "hash-b", redis_url, hasher_b)
    await a.start()
    await b.start()
    yield a, hasher_a, b, hasher_b
    await a.stop()
    await b.stop()


def greedy() -> common_pb2.SamplingParams:
    return common_pb2.SamplingParams(max_tokens=6, ignore_eos=True)


def tokens(chunks: Sequence[common_pb2.TokenChunk]) -> list[int]:
    return [t for chunk in chunks for t in chunk.token_ids]


async def test_every_rpc_hashes_its_prompt_exactly_once(
        pair: tuple[WorkerServer, CountingHasher, WorkerServer, CountingHasher]) -> None:
    a, hasher_a, b, hasher_b = pair
    async with WorkerClient(a.address, TOKEN) as client_a, WorkerClient(b.address, TOKEN) as client_b:
        generated = [c async for c in client_a.generate(worker_pb2.GenerateRequest(
            request_id="g", prompt_token_ids=PROMPTS["generate"], sampling=greedy()))]
        assert hasher_a.prompts == [tuple(PROMPTS["generate"])]
        assert generated[0].cached_prompt_tokens == 0

        for path in ("peer", "shared"):
            prompt = PROMPTS[path]
            reply = await client_a.prefill(worker_pb2.PrefillRequest(
                request_id=path, prompt_token_ids=prompt, sampling=greedy(),
                publish_to_shared_tier=path == "shared"))
            assert hasher_a.prompts[-1] == tuple(prompt)
            assert len(reply.block_hashes) == 2
            where = {"worker_address": a.address} if path == "peer" else {"shared_tier": True}
            source = worker_pb2.KVSource(block_hashes=reply.block_hashes, **where)
            chunks = [c async for c in client_b.decode(worker_pb2.DecodeRequest(
                request_id=path, prompt_token_ids=prompt, generated_token_ids=reply.first.token_ids,
                sampling=greedy(), kv_source=source))]
            # one hash of the Decode's whole prompt (original + the first token), for the transfer,
            # the read-through and the engine's prefix cache together
            assert hasher_b.prompts[-1] == (*prompt, *reply.first.token_ids)
            assert chunks[0].cached_prompt_tokens == 32  # both full blocks came over, none recomputed
            reference = [c async for c in client_a.generate(worker_pb2.GenerateRequest(
                request_id=f"ref-{path}", prompt_token_ids=prompt, sampling=greedy()))]
            assert list(reply.first.token_ids) + tokens(chunks) == tokens(reference)

        session = [c async for c in client_a.session_generate(worker_pb2.GenerateRequest(
            request_id="s", prompt_token_ids=PROMPTS["session"], sampling=greedy()))]
        assert tokens(session)
    expected_a = [PROMPTS["generate"], PROMPTS["peer"], PROMPTS["peer"], PROMPTS["shared"],
                  PROMPTS["shared"], PROMPTS["session"]]  # Prefill, then the reference Generate
    assert hasher_a.prompts == [tuple(p) for p in expected_a]
    assert len(hasher_b.prompts) == 2  # one per Decode
    transferred = b.registry.get_sample_value("heteroserve_worker_kv_transfer_bytes_total", {"tier": "peer"})
    assert transferred is not None and transferred > 0
