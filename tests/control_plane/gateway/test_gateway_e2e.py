"""End to end on loopback: real Redis, two real tiny-model workers, the gateway process, every client.

Greedy output through the gateway (REST, gRPC, both SDK transports, the OpenAI client) must equal the
worker's own output for the same prompt tokens.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

import heteroserve
from control_plane.gateway.models import ChatMessage, ServedModel
from heteroserve.v1 import common_pb2, worker_pb2
from tests.control_plane.gateway.gateway_procs import ADMIN_TOKEN, API_KEY, CLUSTER_TOKEN, Gateway, Worker
from workerrpc.client import WorkerClient

pytestmark = pytest.mark.slow
PROMPT = "The gateway routes every request to the worker that holds its prefix"
AUTH = {"authorization": f"Bearer {API_KEY}"}
Ref = dict[str, tuple[list[int], str]]


async def _direct(address: str, token_ids: list[int], max_tokens: int) -> tuple[list[int], str]:
    async with WorkerClient(address, CLUSTER_TOKEN) as client:
        ids: list[int] = []
        text = ""
        request = worker_pb2.GenerateRequest(request_id="direct", prompt_token_ids=token_ids,
                                             sampling=common_pb2.SamplingParams(max_tokens=max_tokens),
                                             cache_keys=common_pb2.CacheKeys(tenant_salt="acme"))
        async for chunk in client.generate(request):
            ids.extend(chunk.token_ids)
            text += chunk.text
        return ids, text


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, two_workers: list[Worker]) -> Ref:
    model = ServedModel("tiny", tiny_model_dir)
    chat_ids = model.encode(model.render_chat([ChatMessage("user", PROMPT)]))
    return {"prompt": asyncio.run(_direct(two_workers[0].address, model.encode(PROMPT), 12)),
            "chat": asyncio.run(_direct(two_workers[0].address, chat_ids, 12))}


def test_rest_completion_equals_worker(gateway: Gateway, reference: Ref) -> None:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 0}
    reply = httpx.post(f"{gateway.http_url}/v1/completions", json=body, headers=AUTH, timeout=30)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["choices"][0]["text"] == reference["prompt"][1]
    assert data["usage"]["completion_tokens"] == 12
    assert data["route"]["worker_id"] in {"co-0", "co-1"}


def test_rest_stream_matches_non_stream(gateway: Gateway, reference: Ref) -> None:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    events = []
    with httpx.stream("POST", f"{gateway.http_url}/v1/completions", json=body, headers=AUTH, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == reference["prompt"][1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12


def test_rest_stream_client_gone_after_first_token_ends_the_request(gateway: Gateway) -> None:
    """The head and the first chunk leave before the disconnect listener starts (rest.py): a client
    that leaves after them still ends the request (499, nothing left in flight), long before its
    2,000 tokens could have been generated."""
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 2000, "ignore_eos": True, "stream": True}

    def metric(name: str) -> float:
        for line in httpx.get(f"{gateway.http_url}/metrics", timeout=10).text.splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    gone = 'heteroserve_gateway_requests_total{status="499",transport="rest"}'
    before = metric(gone)
    with httpx.stream("POST", f"{gateway.http_url}/v1/completions", json=body, headers=AUTH, timeout=30) as r:
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
        assert '"text"' in first
    deadline = time.monotonic() + 20
    while (metric(gone) == before or metric("heteroserve_gateway_inflight_requests") > 0) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(gone) == before + 1
    assert metric("heteroserve_gateway_inflight_requests") == 0


def test_chat_rest_and_grpc_equal_worker(gateway: Gateway, reference: Ref) -> None:
    for target, transport in ((gateway.http_url, "rest"), (gateway.grpc_target, "grpc")):
        with heteroserve.Client(target, api_key=API_KEY, transport=transport) as client:
            done = client.chat([("user", PROMPT)], model="tiny", max_tokens=12)
            assert done.text == reference["chat"][1], transport
            streamed = "".join(c.text for c in client.chat_stream([{"role": "user", "content": PROMPT}],
                                                                  model="tiny", max_tokens=12))
            assert streamed == reference["chat"][1], transport


def test_grpc_sdk_token_ids_equal_worker(gateway: Gateway, reference: Ref) -> None:
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        done = client.complete(PROMPT, model="tiny", max_tokens=12, slo_class="interactive",
                               session_id="s-1", tenant="acme")
        assert list(done.token_ids) == reference["prompt"][0]
        assert done.usage.completion_tokens == 12 and done.finish_reason == "length"
        chunks = list(client.stream(PROMPT, model="tiny", max_tokens=12))
        assert [t for c in chunks for t in c.token_ids] == reference["prompt"][0]
        assert chunks[-1].route is not None and chunks[-1].route.worker_id in {"co-0", "co-1"}
        assert chunks[-1].route.policy == "prefix_aware" and chunks[-1].route.reason, chunks[-1].route


async def test_grpc_last_tokens_ride_the_final_chunk(gateway: Gateway, reference: Ref) -> None:
    """The worker sends its last token with the finish reason; the gateway forwards one message."""
    from grpc import aio

    from heteroserve.v1 import gateway_pb2, gateway_pb2_grpc

    async with aio.insecure_channel(gateway.grpc_target) as channel:
        request = gateway_pb2.GatewayGenerateRequest(model="tiny", prompt=PROMPT,
                                                     sampling=common_pb2.SamplingParams(max_tokens=1))
        call = gateway_pb2_grpc.GatewayStub(channel).Generate(request, metadata=tuple(AUTH.items()))
        chunks = [c async for c in call]
    assert len(chunks) == 1
    assert list(chunks[0].token_ids) == reference["prompt"][0][:1] and chunks[0].finish_reason == "length"
    assert chunks[0].completion_tokens == 1 and chunks[0].route.worker_id in {"co-0", "co-1"}


async def test_async_client_both_transports(gateway: Gateway,
                                            reference: Ref) -> None:
    for target, transport in ((gateway.http_url, "rest"), (gateway.grpc_target, "grpc")):
        async with heteroserve.AsyncClient(target, api_key=API_KEY, transport=transport) as client:
            models = await client.models()
            assert [m.id for m in models] == ["tiny"] and models[0].max_context_tokens == 4096
            text = "".join([c.text async for c in client.stream(PROMPT, model="tiny", max_tokens=12)])
            assert text == reference["prompt"][1]


def test_openai_client_unchanged(gateway: Gateway, reference: Ref) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{gateway.http_url}/v1", api_key=API_KEY)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    done = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0)
    assert done.choices[0].text == reference["prompt"][1]
    assert done.usage is not None and done.usage.completion_tokens == 12
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=12, temperature=0)
    assert chat.choices[0].message.content == reference["chat"][1]
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPT}],
                                            max_tokens=12, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == reference["chat"][1]
    with pytest.raises(openai.NotFoundError, match="model"):
        client.completions.create(model="nope", prompt="x", max_tokens=1)
    bad = openai.OpenAI(base_url=f"{gateway.http_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model="tiny", prompt="x", max_tokens=1)


async def test_prefix_routing_lands_on_holder(gateway: Gateway) -> None:
    busy = " ".join(f"an unrelated long request, part {i}" for i in range(8))
    shared = " ".join(f"chapter {i} of the long shared system prompt" for i in range(12))
    async with heteroserve.AsyncClient(gateway.http_url, api_key=API_KEY) as client:
        # while one worker is busy, the shared prefix lands on the other one (by load) ...
        stream = client.stream(busy, model="tiny", max_tokens=400, ignore_eos=True)
        await anext(stream)
        first = await client.complete(shared + " question 0", model="tiny", max_tokens=2)
        rest = [c async for c in stream]
        assert rest[-1].route is not None and rest[-1].route.worker_id != first.route.worker_id
        # ... and stays there once both are idle, although ties would otherwise go to co-0
        for i in range(1, 4):
            again = await client.complete(shared + f" question {i}", model="tiny", max_tokens=2)
            assert again.route.worker_id == first.route.worker_id, (i, again.route)
            assert again.route.cached_prompt_tokens >= 16 * 4, again.route
            assert (again.route.policy, again.route.reason) == ("prefix_aware", "prefix_hit"), again.route


async def test_imbalance_guard_spreads_hot_prefix(gateway: Gateway) -> None:
    hot = " ".join(f"hot prefix sentence number {i}" for i in range(10))
    async with heteroserve.AsyncClient(gateway.http_url, api_key=API_KEY) as client:
        await client.complete(hot, model="tiny", max_tokens=1)
        done = await asyncio.gather(*(client.complete(hot + f" q{i}", model="tiny", max_tokens=48,
                                                      ignore_eos=True) for i in range(10)))
    used = {d.route.worker_id for d in done}
    assert used == {"co-0", "co-1"}, [d.route for d in done]
    metrics = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    assert 'reason="imbalance_guard"' in metrics, [x for x in metrics.splitlines() if "reason=" in x]


def test_admin_and_metrics(gateway: Gateway) -> None:
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    workers = httpx.get(f"{gateway.http_url}/admin/workers", headers=admin, timeout=10).json()["workers"]
    assert sorted(w["worker_id"] for w in workers) == ["co-0", "co-1"]
    assert httpx.get(f"{gateway.http_url}/admin/workers", headers=AUTH, timeout=10).status_code == 403
    assert httpx.get(f"{gateway.http_url}/admin/plan", headers=admin, timeout=10).status_code == 404
    assert httpx.get(f"{gateway.http_url}/ready", timeout=10).status_code == 200
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    assert 'heteroserve_gateway_requests_total{status="200",transport="rest"}' in text
    assert 'heteroserve_gateway_route_decisions_total{policy="prefix_aware",reason="prefix_hit",' \
           'role="colocated"}' in text
    assert "heteroserve_gateway_ttft_seconds_bucket" in text


def test_generate_cli(gateway: Gateway, reference: Ref) -> None:
    import os
    import subprocess

    from tests.control_plane.gateway.gateway_procs import BIN

    env = {**os.environ, "HETEROSERVE_API_KEY": API_KEY}
    out = subprocess.run([BIN, "generate", PROMPT, "--url", gateway.http_url, "--max-tokens", "12",
                          "--show-route"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == reference["prompt"][1] + "\n"
    assert "route: worker=co-" in out.stderr and "completion_tokens=12" in out.stderr
    bad = subprocess.run([BIN, "generate", "x", "--grpc", gateway.grpc_target, "--model", "nope"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "model" in bad.stderr


async def test_gateway_hashes_match_worker_kv_events(gateway: Gateway, tiny_model_dir: Path,
                                                     gw_redis: object) -> None:
    """The KV events the workers publish name the same block hashes the gateway computes, so the
    prefix index (and any other gateway replica) knows where this gateway's prompts live."""
    import redis.asyncio as aioredis

    from cache.hashing import HashKeys, hash_prompt_blocks
    from cache.index_sync import PrefixIndexFollower

    long_prompt = " ".join(f"event check sentence {i}" for i in range(12))
    async with heteroserve.AsyncClient(gateway.http_url, api_key=API_KEY) as client:
        done = await client.complete(long_prompt, model="tiny", max_tokens=2)
    model = ServedModel("tiny", tiny_model_dir)
    keys = HashKeys(model.kv_model_id, tenant_salt="acme", layout=model.kv_layout("float32", 16))
    hashes = hash_prompt_blocks(model.encode(long_prompt), keys)
    assert len(hashes) >= 2
    redis_client = aioredis.Redis.from_url(gw_redis.url)  # type: ignore[attr-defined]
    follower = PrefixIndexFollower(redis_client)
    try:
        for _ in range(50):
            await follower.recover()
            runs = follower.index.longest_prefix_per_tier(hashes)
            if any(owner == done.route.worker_id for owner, _ in runs):
                break
            await asyncio.sleep(0.1)
        assert {owner for owner, _ in runs} >= {done.route.worker_id}, runs
        assert max(runs.values()) == len(hashes)
    finally:
        await redis_client.aclose()
