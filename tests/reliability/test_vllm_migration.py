"""A vLLM worker SIGKILLed in the middle of a stream is migrated like a native one, with real
processes: a vLLM worker and a native worker behind the real gateway (private Redis, loopback gRPC).

The stream starts on the vLLM worker (a first request breaks the tie between two idle workers
towards it, and then its KV events make it the prompt's prefix holder), the vLLM worker is killed
with SIGKILL after a few chunks, and the gateway re-prefills the prompt plus the tokens already sent
on the native worker. The client must see every token exactly once: as many as asked, equal to the
uninterrupted run on the vLLM worker (greedy decoding is deterministic, and both engines' greedy
tokens equal Hugging Face's for this model, tests/workers/vllm), with `migrations` 1 on the final
chunk and on the gateway's migration counter. The vLLM worker also runs its OpenAI HTTP front
(`--openai-port`), which must answer on that port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.localredis import LocalRedis, RedisServerConfig, free_port
from heteroserve.client import Client
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
from tests.workers.vllm.vllm_procs import VLLMWorker, start_together, vllm_worker_args

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]
VLLM_ID, NATIVE_ID = "a-vllm", "z-native"  # a tie between the two idle workers goes to "a-vllm"
PROMPT = " ".join(f"line {i} of a prompt that spans several KV blocks" for i in range(6))
MAX_TOKENS = 600
KILL_AFTER_CHUNKS = 8


def migrations(gateway: Gateway) -> float:
    """heteroserve_gateway_migrations_total from the gateway's /metrics (0 before the first)."""
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    found = re.search(r"^heteroserve_gateway_migrations_total(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def openai_port() -> int:
    return free_port()


@pytest.fixture
def cluster(tiny_model_dir: Path, tmp_path: Path,
            openai_port: int) -> Iterator[tuple[Gateway, VLLMWorker, Worker]]:
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path / "redis")).start()
    vllm: list[VLLMWorker] = []
    native = gateway = None
    try:
        vllm = start_together([vllm_worker_args(tiny_model_dir, redis.url, VLLM_ID,
                                                "--openai-port", str(openai_port))])
        native = start_worker(tiny_model_dir, redis.url, NATIVE_ID)
        # a long refresh period: the gateway learns of the kill from the failed stream, not a poll
        gateway = start_gateway(tiny_model_dir, redis.url, write_api_keys(tmp_path / "keys.yaml"),
                                "--refresh-seconds", "30")
        wait_for_workers(gateway, 2, timeout=120.0)
        yield gateway, vllm[0], native
    finally:
        if gateway is not None:
            gateway.stop()
        for worker in [*vllm, *([native] if native else [])]:
            worker.stop()  # a killed vLLM worker's engine processes too
        redis.stop()


def test_a_killed_vllm_worker_mid_stream_is_migrated_to_the_native_worker(
        cluster: tuple[Gateway, VLLMWorker, Worker], openai_port: int) -> None:
    gateway, vllm, _native = cluster
    # the vLLM worker's OpenAI front runs on the port given (--openai-port reaches the vLLM server path)
    front = httpx.post(f"http://127.0.0.1:{openai_port}/v1/completions", timeout=120,
                       headers={"authorization": f"Bearer {CLUSTER_TOKEN}"},
                       json={"model": "tiny", "prompt": "hello", "max_tokens": 4, "ignore_eos": True})
    assert front.status_code == 200 and front.json()["usage"]["completion_tokens"] == 4, front.text
    with Client(gateway.grpc_target, api_key=API_KEY, transport="grpc", timeout_seconds=600) as client:
        uninterrupted = client.complete(PROMPT, model="tiny", max_tokens=MAX_TOKENS, ignore_eos=True)
        assert uninterrupted.route.worker_id == VLLM_ID, uninterrupted.route
        assert len(uninterrupted.token_ids) == MAX_TOKENS
        before = migrations(gateway)
        chunks = []
        for chunk in client.stream(PROMPT, model="tiny", max_tokens=MAX_TOKENS, ignore_eos=True):
            chunks.append(chunk)
            if len(chunks) == KILL_AFTER_CHUNKS:
                assert chunk.route is None or chunk.route.worker_id == VLLM_ID
                vllm.kill()
    final = chunks[-1]
    streamed = [t for c in chunks for t in c.token_ids]
    assert final.route is not None and final.route.migrations == 1, final.route
    assert final.route.worker_id == NATIVE_ID
    assert final.finish_reason == "length"
    assert final.usage is not None
    assert len(streamed) == MAX_TOKENS == final.usage.completion_tokens
    assert streamed == list(uninterrupted.token_ids)
    assert migrations(gateway) == before + 1
