"""`heteroserve worker --engine vllm` for real: a mixed pool (one vLLM worker, one native worker), a
gateway and vLLM's offline `LLM.generate` as the reference, on loopback with a private Redis (one set of
engines per module: each vLLM start costs a minute here, several under load).

- greedy tokens through the worker and through the gateway equal vLLM's offline `LLM.generate` (and
  our native engine's, which equal Hugging Face's) for the same prompts;
- bad input gets the native worker's errors; a wrong token is refused;
- Stats, registration, /metrics (worker and vLLM's own `vllm:*`);
- vLLM's KV events reach the prefix index named by the gateway's hashes, and a prompt whose prefix
  the vLLM worker holds is routed to it (ties would go to the native worker);
- SIGTERM drains, deregisters and exits 0.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import heteroserve
from common.errors import AuthenticationError, InvalidRequestError
from common.localredis import LocalRedis, RedisServerConfig, free_port
from control_plane.gateway.models import ServedModel
from heteroserve.v1 import common_pb2, worker_pb2
from tests.control_plane.gateway.gateway_procs import (
    API_KEY,
    CLUSTER_TOKEN,
    Gateway,
    Worker,
    start_gateway,
    start_worker,
    wait_for_workers,
    write_api_keys,
)
from tests.workers.vllm.vllm_procs import (
    offline_reference,
    reference_tokens,
    start_together,
    vllm_worker_args,
)
from workerrpc.client import WorkerClient

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]
TEXTS = ("The gateway routes every request to the worker that holds its prefix",
         " ".join(f"a longer prompt of several blocks, sentence {i}" for i in range(10)),
         "short")
MAX_TOKENS = 12
VLLM_ID, NATIVE_ID = "z-vllm", "a-native"  # a tie between the two goes to the native worker


@dataclass
class Cluster:
    workers: list[Worker]
    gateway: Gateway
    redis_url: str
    metrics_port: int
    prompts: list[list[int]]
    reference: list[list[int]]


@pytest.fixture(scope="module")
def cluster(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path_factory.mktemp("vllm-redis"))).start()
    model = ServedModel("tiny", tiny_model_dir)
    prompts = [model.encode(t) for t in TEXTS]
    metrics_port = free_port()
    reference = offline_reference(tiny_model_dir, prompts, MAX_TOKENS)
    workers: list[Worker] = start_together([
        vllm_worker_args(tiny_model_dir, redis.url, VLLM_ID, "--metrics-port", str(metrics_port))])
    gateway = None
    try:
        workers.append(start_worker(tiny_model_dir, redis.url, NATIVE_ID))
        expected = reference_tokens(reference)
        keys = write_api_keys(tmp_path_factory.mktemp("keys") / "keys.yaml")
        gateway = start_gateway(tiny_model_dir, redis.url, keys, "--balance-abs-threshold", "2")
        try:
            wait_for_workers(gateway, 2, timeout=120.0)  # the first stats polls are slow under load
        except AssertionError as exc:
            pytest.fail(f"{exc}\ngateway stderr:\n{gateway.stderr[-3000:]}")
        yield Cluster(workers, gateway, redis.url, metrics_port, prompts, expected)
    finally:
        if gateway is not None:
            gateway.stop()
        for worker in workers:
            worker.stop()
        redis.stop()


async def _generate(address: str, prompt: list[int], **sampling: object) -> list[int]:
    async with WorkerClient(address, CLUSTER_TOKEN) as client:
        request = worker_pb2.GenerateRequest(
            request_id="direct", prompt_token_ids=prompt,
            sampling=common_pb2.SamplingParams(max_tokens=MAX_TOKENS, **sampling))  # type: ignore[arg-type]
        return [t async for chunk in client.generate(request) for t in chunk.token_ids]


async def _native(model_dir: Path, prompts: list[list[int]]) -> list[list[int]]:
    from workers.engine.async_engine import AsyncEngine
    from workers.engine.config import EngineConfig
    from workers.engine.types import EngineRequest, SamplingParams

    engine = AsyncEngine.from_config(EngineConfig(model_dir=model_dir, device="cpu", kv_cache_bytes=16 << 20))
    await engine.start()
    try:
        out = []
        for i, prompt in enumerate(prompts):
            request = EngineRequest(f"n{i}", tuple(prompt), SamplingParams(max_tokens=MAX_TOKENS))
            out.append([e.token_id async for e in engine.generate(request) if e.token_id is not None])
        return out
    finally:
        await engine.stop()


async def test_worker_greedy_tokens_equal_offline_vllm_and_native(cluster: Cluster,
                                                                  tiny_model_dir: Path) -> None:
    assert all(len(tokens) == MAX_TOKENS for tokens in cluster.reference)  # no early EOS hides a difference
    got = [await _generate(cluster.workers[0].address, p) for p in cluster.prompts]
    assert got == cluster.reference
    assert await _native(tiny_model_dir, cluster.prompts) == cluster.reference


def test_gateway_tokens_equal_offline_vllm(cluster: Cluster) -> None:
    with heteroserve.Client(cluster.gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        for text, expected in zip(TEXTS, cluster.reference, strict=True):
            done = client.complete(text, model="tiny", max_tokens=MAX_TOKENS)
            assert list(done.token_ids) == expected, text
            assert done.finish_reason == "length" and done.route.worker_id in {VLLM_ID, NATIVE_ID}


async def test_bad_input_gets_the_native_workers_errors(cluster: Cluster) -> None:
    address = cluster.workers[0].address
    with pytest.raises(InvalidRequestError, match=r"prompt_token_ids.*outside the vocabulary \[0, 2048\)"):
        await _generate(address, [1, 99_999])
    with pytest.raises(InvalidRequestError, match=r"sampling\.top_p.*must be in \(0, 1\]"):
        await _generate(address, [1, 2, 3], top_p=1.5)
    with pytest.raises(InvalidRequestError, match=r"prompt_token_ids.*leave no room"):
        await _generate(address, [5] * 4096)
    async with WorkerClient(address, "not-the-token") as client:
        with pytest.raises(AuthenticationError):
            await client.stats()
    assert await _generate(address, cluster.prompts[0]) == cluster.reference[0]  # still serving


async def test_stats_registration_and_metrics(cluster: Cluster) -> None:
    import redis.asyncio as aioredis

    from common.registry import list_workers

    async with WorkerClient(cluster.workers[0].address, CLUSTER_TOKEN) as client:
        stats = await client.stats()
        assert await client.health()
    assert (stats.worker_id, stats.model, stats.block_size) == (VLLM_ID, "tiny", 16)
    assert stats.kv_blocks_total > 0 and stats.prompt_tokens_total > 0 and stats.generated_tokens_total > 0
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        records = {r.worker_id: r for r in await list_workers(redis)}
    finally:
        await redis.aclose()
    assert set(records) == {VLLM_ID, NATIVE_ID}
    assert records[VLLM_ID].block_size == 16 and records[VLLM_ID].kv_blocks == stats.kv_blocks_total
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'heteroserve_worker_requests_total{method="Generate",status="ok"}' in text
    assert "vllm:prompt_tokens_total" in text or "vllm:prompt_tokens" in text
    assert "vllm:num_requests_running" in text


async def test_kv_events_name_the_gateways_hashes(cluster: Cluster, tiny_model_dir: Path) -> None:
    import redis.asyncio as aioredis

    from cache.hashing import HashKeys, hash_prompt_blocks
    from cache.index_sync import PrefixIndexFollower

    text = " ".join(f"event check sentence {i}" for i in range(14))
    model = ServedModel("tiny", tiny_model_dir)
    keys = HashKeys(model.kv_model_id, tenant_salt="acme", layout=model.kv_layout("float32", 16))
    tokens = model.encode(text)
    async with WorkerClient(cluster.workers[0].address, CLUSTER_TOKEN) as worker:
        request = worker_pb2.GenerateRequest(request_id="ev", prompt_token_ids=tokens,
                                             sampling=common_pb2.SamplingParams(max_tokens=2),
                                             cache_keys=common_pb2.CacheKeys(tenant_salt="acme"))
        assert [c async for c in worker.generate(request)]
    hashes = hash_prompt_blocks(tokens, keys)
    full_vllm_blocks = len(tokens) // 32 * 2  # vLLM announces whole 32-token pages: two hashes each
    assert full_vllm_blocks >= 4
    redis = aioredis.Redis.from_url(cluster.redis_url)
    follower = PrefixIndexFollower(redis)
    try:
        for _ in range(100):
            await follower.recover()
            runs = follower.index.longest_prefix_per_tier(hashes)
            if runs.get((VLLM_ID, "device"), 0) >= full_vllm_blocks:
                break
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    assert runs.get((VLLM_ID, "device")) == full_vllm_blocks, runs


async def test_repeated_prompt_goes_to_the_vllm_worker_holding_it(cluster: Cluster,
                                                                  tiny_model_dir: Path) -> None:
    shared = " ".join(f"chapter {i} of the long shared system prompt" for i in range(12))
    tokens = ServedModel("tiny", tiny_model_dir).encode(shared)
    async with WorkerClient(cluster.workers[0].address, CLUSTER_TOKEN) as worker:  # only vLLM holds it
        request = worker_pb2.GenerateRequest(request_id="hold", prompt_token_ids=tokens,
                                             sampling=common_pb2.SamplingParams(max_tokens=2),
                                             cache_keys=common_pb2.CacheKeys(tenant_salt="acme"))
        assert [c async for c in worker.generate(request)]
    await asyncio.sleep(2.0)  # vLLM's KV events reach the gateway's index
    async with heteroserve.AsyncClient(cluster.gateway.http_url, api_key=API_KEY) as client:
        for i in range(3):
            again = await client.complete(shared + f" question {i}", model="tiny", max_tokens=2)
            assert again.route.worker_id == VLLM_ID, (i, again.route)
            assert (again.route.policy, again.route.reason) == ("prefix_aware", "prefix_hit"), again.route
            assert again.route.cached_prompt_tokens >= 64, again.route


async def test_sigterm_drains_and_deregisters(cluster: Cluster) -> None:
    import redis.asyncio as aioredis

    from common.registry import get_worker

    worker = cluster.workers[0]
    assert worker.stop() == 0, worker.stderr[-3000:]
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        assert await get_worker(redis, worker.worker_id) is None
    finally:
        await redis.aclose()
