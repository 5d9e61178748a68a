"""End-to-end tests of `heteroserve worker` processes on 127.0.0.1 with the tiny model.

Worker A (role prefill) and worker B (role decode) run for the whole module; the drain test starts its
own worker C with its own Redis. Expected tokens come from an in-process `AsyncEngine` on the same
model, so every comparison is exact.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from grpc import aio
from redis import asyncio as aioredis

from common import registry
from common.errors import AuthenticationError, InvalidRequestError, UnavailableError
from common.localredis import LocalRedis, RedisServerConfig, free_port
from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from tests.workers.service.worker_procs import CLUSTER_TOKEN, WorkerProcess, start_worker
from workerrpc.client import WorkerClient
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest, SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PROMPTS = [list(range(3, 8)), [(7 * i + 11) % 2000 for i in range(40)],
           [(13 * i + 5) % 2000 for i in range(70)]]
MAX_TOKENS = 12
LONG_STREAM_TOKENS = 800  # long enough (~1 ms/token or more) to be running when SIGTERM lands


def greedy(max_tokens: int = MAX_TOKENS) -> common_pb2.SamplingParams:
    return common_pb2.SamplingParams(max_tokens=max_tokens, ignore_eos=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reference(tiny_model_dir: Path) -> AsyncIterator[AsyncEngine]:
    engine = AsyncEngine.from_config(EngineConfig(model_dir=tiny_model_dir, kv_cache_bytes=8 * 2**20))
    await engine.start()
    yield engine
    await engine.stop()


async def expected_tokens(engine: AsyncEngine, prompt: Sequence[int], request_id: str) -> list[int]:
    request = EngineRequest(request_id, tuple(prompt), SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True))
    return [e.token_id async for e in engine.generate(request) if e.token_id is not None]


async def collect(stream: AsyncIterator[common_pb2.TokenChunk]) -> list[common_pb2.TokenChunk]:
    return [chunk async for chunk in stream]


def kv_block_bytes(model_dir: Path) -> int:
    """Tensor bytes of one KV block of the model (K and V, every layer, 16 tokens, float32)."""
    import json

    config = json.loads((model_dir / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return int(config["num_hidden_layers"] * 2 * config["num_key_value_heads"] * 16 * head_dim * 4)


def tokens(chunks: Sequence[common_pb2.TokenChunk]) -> list[int]:
    return [t for c in chunks for t in c.token_ids]


async def test_generate_matches_in_process_engine(worker_b: WorkerProcess, reference: AsyncEngine) -> None:
    # on B: a decode worker serves Generate (a P/D route's short prompt), a prefill worker refuses it
    async with WorkerClient(worker_b.address, CLUSTER_TOKEN) as client:
        streams = [collect(client.generate(worker_pb2.GenerateRequest(
            request_id=f"gen-{i}", prompt_token_ids=p, sampling=greedy()))) for i, p in enumerate(PROMPTS)]
        results = await asyncio.gather(*streams)  # concurrent: continuous batching must not change tokens
    for i, (prompt, chunks) in enumerate(zip(PROMPTS, results, strict=True)):
        assert tokens(chunks) == await expected_tokens(reference, prompt, f"ref-{i}")
        assert chunks[0].prompt_tokens == len(prompt) and chunks[0].worker_id == "worker-b"
        assert chunks[-1].finish_reason == "length"


async def test_prefill_on_a_then_decode_on_b_pulls_kv(worker_a: WorkerProcess, worker_b: WorkerProcess,
                                                      reference: AsyncEngine, tiny_model_dir: Path) -> None:
    prompt = [(17 * i + 3) % 2000 for i in range(75)]  # 4 full blocks + 11 tokens
    expected = await expected_tokens(reference, prompt, "ref-pd")
    bytes_before = worker_b.metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="peer"')
    async with WorkerClient(worker_a.address, CLUSTER_TOKEN) as a, \
            WorkerClient(worker_b.address, CLUSTER_TOKEN) as b:
        reply = await a.prefill(worker_pb2.PrefillRequest(request_id="pd", prompt_token_ids=prompt,
                                                          sampling=greedy()))
        assert list(reply.first.token_ids) == expected[:1] and reply.first.finish_reason == ""
        assert len(reply.block_hashes) == 4 and reply.worker_id == "worker-a"
        source = worker_pb2.KVSource(worker_address=worker_a.address, block_hashes=reply.block_hashes)
        chunks = await collect(b.decode(worker_pb2.DecodeRequest(
            request_id="pd", prompt_token_ids=prompt, generated_token_ids=reply.first.token_ids,
            sampling=greedy(), kv_source=source)))
    assert list(reply.first.token_ids) + tokens(chunks) == expected
    assert chunks[0].cached_prompt_tokens >= 64  # the 4 pulled blocks were not recomputed
    pulled = worker_b.metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="peer"') - bytes_before
    assert pulled == 4 * kv_block_bytes(tiny_model_dir)  # tensor bytes, as the shared tier counts them


async def test_decode_from_dead_source_prefills_locally(worker_b: WorkerProcess,
                                                        reference: AsyncEngine) -> None:
    prompt = [(29 * i + 1) % 2000 for i in range(50)]
    expected = await expected_tokens(reference, prompt, "ref-dead")
    failures_before = worker_b.metric("heteroserve_worker_kv_transfer_failures_total", 'tier="peer"')
    source = worker_pb2.KVSource(worker_address=f"127.0.0.1:{free_port()}")  # nobody listens
    async with WorkerClient(worker_b.address, CLUSTER_TOKEN) as b:
        chunks = await collect(b.decode(worker_pb2.DecodeRequest(
            request_id="dead", prompt_token_ids=prompt, generated_token_ids=expected[:1],
            sampling=greedy(), kv_source=source)))
    assert expected[:1] + tokens(chunks) == expected
    failures_after = worker_b.metric("heteroserve_worker_kv_transfer_failures_total", 'tier="peer"')
    assert failures_after == failures_before + 1


BAD_REQUESTS = [
    ("prompt_token_ids", worker_pb2.GenerateRequest(prompt_token_ids=[5] * 4096, sampling=greedy())),
    ("prompt_token_ids", worker_pb2.GenerateRequest(prompt_token_ids=[], sampling=greedy())),
    ("prompt_token_ids", worker_pb2.GenerateRequest(prompt_token_ids=[5, 99999], sampling=greedy())),
    ("sampling.max_tokens", worker_pb2.GenerateRequest(prompt_token_ids=[5, 6], sampling=greedy(0))),
    ("sampling.max_tokens", worker_pb2.GenerateRequest(prompt_token_ids=[5, 6], sampling=greedy(-3))),
    ("sampling.top_p", worker_pb2.GenerateRequest(
        prompt_token_ids=[5, 6], sampling=common_pb2.SamplingParams(max_tokens=4, top_p=1.5))),
    ("sampling.top_p", worker_pb2.GenerateRequest(
        prompt_token_ids=[5, 6], sampling=common_pb2.SamplingParams(max_tokens=4, top_p=-0.1))),
]


async def test_bad_input_is_invalid_argument_and_worker_keeps_serving(worker_a: WorkerProcess,
                                                                     worker_b: WorkerProcess) -> None:
    async with WorkerClient(worker_b.address, CLUSTER_TOKEN) as client, \
            WorkerClient(worker_a.address, CLUSTER_TOKEN) as prefill:
        for field, request in BAD_REQUESTS:
            with pytest.raises(InvalidRequestError, match=rf"^{field}: "):
                await collect(client.generate(request))
        with pytest.raises(InvalidRequestError, match=r"^sampling\.top_p: "):
            await prefill.prefill(worker_pb2.PrefillRequest(
                prompt_token_ids=[5, 6], sampling=common_pb2.SamplingParams(max_tokens=4, top_p=2.0)))
        chunks = await collect(client.generate(worker_pb2.GenerateRequest(prompt_token_ids=[5, 6],
                                                                          sampling=greedy(3))))
    assert len(tokens(chunks)) == 3
    invalid = worker_b.metric("heteroserve_worker_requests_total",
                              'method="Generate",status="invalid_argument"')
    assert invalid >= len(BAD_REQUESTS)


async def test_missing_or_wrong_token_is_unauthenticated(worker_a: WorkerProcess) -> None:
    for token in ("", "not-the-cluster-token"):
        async with WorkerClient(worker_a.address, token) as client:
            with pytest.raises(AuthenticationError):
                await client.stats()
            with pytest.raises(AuthenticationError):
                await collect(client.generate(worker_pb2.GenerateRequest(prompt_token_ids=[5],
                                                                         sampling=greedy())))
            assert await client.health()  # probes need no token
    async with WorkerClient(worker_a.address, CLUSTER_TOKEN) as client:
        stats = await client.stats()
    assert (stats.worker_id, stats.role, stats.model) == ("worker-a", "prefill", "tiny")
    assert not stats.draining and stats.kv_blocks_total > 0 and stats.generated_tokens_total > 0


async def test_registration_redis_outage_and_sigterm_drain(tiny_model_dir: Path, tmp_path: Path) -> None:
    redis_config = RedisServerConfig(data_dir=tmp_path / "redis", port=free_port())
    redis_server = LocalRedis(redis_config).start()
    worker: WorkerProcess | None = None
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        worker = start_worker(tiny_model_dir, role="decode", redis_url=redis_server.url, worker_id="worker-c",
                              extra=("--node-type", "cpu-small", "--pool", "decode-cpu"))
        record = await registry.get_worker(client, "worker-c")
        assert record is not None and (record.address, record.role, record.pool) == (
            worker.address, "decode", "decode-cpu")
        assert record.kv_blocks > 0 and record.block_size == 16 and not record.draining

        redis_server.stop()  # the registry goes away: the worker serves on
        await asyncio.sleep(1.5)
        async with WorkerClient(worker.address, CLUSTER_TOKEN) as worker_client:
            assert len(tokens(await collect(worker_client.generate(worker_pb2.GenerateRequest(
                prompt_token_ids=PROMPTS[1], sampling=greedy(4)))))) == 4
            redis_server = LocalRedis(redis_config).start()  # back, empty: the heartbeat re-registers
            await client.aclose()
            client = aioredis.Redis.from_url(redis_server.url)
            assert await wait_for_record(client, "worker-c", present=True)

            long_stream = worker_client.generate(worker_pb2.GenerateRequest(
                request_id="long", prompt_token_ids=PROMPTS[2], sampling=greedy(LONG_STREAM_TOKENS)))
            first = await anext(long_stream)
            worker.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            with pytest.raises(UnavailableError, match="draining"):
                await collect(worker_client.generate(worker_pb2.GenerateRequest(
                    prompt_token_ids=[5, 6], sampling=greedy(2))))
            assert not await worker_client.health()
            draining = await registry.get_worker(client, "worker-c")
            assert draining is not None and draining.draining  # routers skip it from now on
            rest = await collect(long_stream)
        assert len(first.token_ids) + len(tokens(rest)) == LONG_STREAM_TOKENS
        assert rest[-1].finish_reason == "length"
        assert await asyncio.to_thread(worker.proc.wait, 30) == 0
        assert await registry.get_worker(client, "worker-c") is None
        events = await client.xrange("hs:kvevents:default")
        stored = [f for _, f in events if f[b"w"] == b"worker-c" and f[b"k"] == b"s" and f[b"t"] == b"device"]
        assert stored, "the worker published no KV block events"
        assert "registry unreachable" in "".join(worker.stderr_lines)
        assert CLUSTER_TOKEN not in "".join(worker.stderr_lines)
    finally:
        if worker is not None:
            worker.stop()
        await client.aclose()
        redis_server.stop()


async def wait_for_record(client: aioredis.Redis, worker_id: str, *, present: bool,
                          timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            if (await registry.get_worker(client, worker_id) is not None) == present:
                return True
        except OSError:
            pass
        await asyncio.sleep(0.1)
    return False


async def test_prefill_publishes_to_shared_tier_and_decode_reads_it(
        worker_a: WorkerProcess, worker_b: WorkerProcess, reference: AsyncEngine,
        tiny_model_dir: Path) -> None:
    prompt = [(31 * i + 7) % 2000 for i in range(40)]  # 2 full blocks + 8 tokens
    expected = await expected_tokens(reference, prompt, "ref-shared")
    bytes_before = worker_b.metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="shared"')
    async with WorkerClient(worker_a.address, CLUSTER_TOKEN) as a, \
            WorkerClient(worker_b.address, CLUSTER_TOKEN) as b:
        reply = await a.prefill(worker_pb2.PrefillRequest(request_id="sh", prompt_token_ids=prompt,
                                                          sampling=greedy(), publish_to_shared_tier=True))
        source = worker_pb2.KVSource(shared_tier=True, block_hashes=reply.block_hashes)
        chunks = await collect(b.decode(worker_pb2.DecodeRequest(
            request_id="sh", prompt_token_ids=prompt, generated_token_ids=reply.first.token_ids,
            sampling=greedy(), kv_source=source)))
    assert list(reply.first.token_ids) + tokens(chunks) == expected
    assert chunks[0].cached_prompt_tokens >= 32
    read = worker_b.metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="shared"') - bytes_before
    assert read == 2 * kv_block_bytes(tiny_model_dir)  # the same measure as the peer stream's
    # the tier's own metrics are on the worker's /metrics too: B read the blocks A wrote to Redis
    assert worker_a.metric("heteroserve_cache_written_bytes_total", 'tier="redis"') > 0
    assert worker_b.metric("heteroserve_cache_hits_total", 'tier="redis"') >= 2


class CorruptingRelay(worker_pb2_grpc.WorkerServicer):
    """A peer whose PullKV relays worker A's blocks but flips one byte in the second block's payload."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream

    async def PullKV(self, request: worker_pb2.PullKVRequest,
                     context: aio.ServicerContext) -> AsyncIterator[common_pb2.KVBlockData]:
        async with WorkerClient(self.upstream, CLUSTER_TOKEN) as upstream:
            i = 0
            async for block in upstream.pull_kv(list(request.block_hashes), request.cache_keys):
                if i == 1:
                    payload = bytearray(block.payload)
                    payload[len(payload) // 2] ^= 0xFF
                    block = common_pb2.KVBlockData(block_hash=block.block_hash, payload=bytes(payload))
                i += 1
                yield block


async def test_corrupt_block_from_peer_is_dropped_and_recomputed(
        worker_a: WorkerProcess, worker_b: WorkerProcess, reference: AsyncEngine) -> None:
    prompt = [(37 * i + 2) % 2000 for i in range(60)]  # 3 full blocks + 12 tokens
    expected = await expected_tokens(reference, prompt, "ref-corrupt")
    relay = aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(CorruptingRelay(worker_a.address), relay)
    port = relay.add_insecure_port("127.0.0.1:0")
    await relay.start()
    failures_before = worker_b.metric("heteroserve_worker_kv_transfer_failures_total", 'tier="peer"')
    try:
        async with WorkerClient(worker_a.address, CLUSTER_TOKEN) as a, \
                WorkerClient(worker_b.address, CLUSTER_TOKEN) as b:
            reply = await a.prefill(worker_pb2.PrefillRequest(request_id="cx", prompt_token_ids=prompt,
                                                              sampling=greedy()))
            source = worker_pb2.KVSource(worker_address=f"127.0.0.1:{port}", block_hashes=reply.block_hashes)
            chunks = await collect(b.decode(worker_pb2.DecodeRequest(
                request_id="cx", prompt_token_ids=prompt, generated_token_ids=reply.first.token_ids,
                sampling=greedy(), kv_source=source)))
    finally:
        await relay.stop(grace=None)
    assert list(reply.first.token_ids) + tokens(chunks) == expected
    assert chunks[0].cached_prompt_tokens == 16  # only the block before the corrupt one was imported
    failures_after = worker_b.metric("heteroserve_worker_kv_transfer_failures_total", 'tier="peer"')
    assert failures_after == failures_before + 1
