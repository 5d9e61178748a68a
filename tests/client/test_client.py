"""The SDK against a real gateway (REST + gRPC, in this process) that has no workers: typed errors on
both transports, retries with backoff on retryable errors only, and no torch import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import heteroserve
from common.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from common.localredis import free_port
from control_plane.gateway.auth import ApiKeySpec, hash_key
from control_plane.gateway.config import GatewayConfig, ModelSpec
from control_plane.gateway.server import serve
from heteroserve.client import RetryPolicy

KEY = "sk-client-test"


@pytest.fixture
async def gateway(tiny_model_dir: Path) -> AsyncIterator[tuple[str, str]]:
    config = GatewayConfig(models=(ModelSpec("tiny", tiny_model_dir),), cluster_token="client-cluster",
                           api_keys=(ApiKeySpec("k", hash_key(KEY), "acme"),), http_port=0,
                           grpc_port=free_port())
    ready: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, lambda h, g: ready.set_result(
        (f"http://127.0.0.1:{h}", f"127.0.0.1:{g}")), stop_event=stop))
    targets = await asyncio.wait_for(ready, 30)
    yield targets
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
async def test_typed_errors_name_the_field(gateway: tuple[str, str], transport: str) -> None:
    target = gateway[0] if transport == "rest" else gateway[1]
    async with heteroserve.AsyncClient(target, api_key=KEY, transport=transport,
                                       retry=RetryPolicy(max_retries=0)) as client:
        with pytest.raises(InvalidRequestError) as empty:
            await client.complete("", model="tiny")
        assert empty.value.field == "prompt"
        with pytest.raises(InvalidRequestError) as too_many:
            await client.complete("hi", model="tiny", max_tokens=100_000)
        assert too_many.value.field == "max_tokens"
        with pytest.raises(NotFoundError) as unknown:
            await client.complete("hi", model="nope")
        assert unknown.value.field == "model"
        with pytest.raises(PermissionDeniedError):
            await client.complete("hi", model="tiny", tenant="someone-else")
        with pytest.raises(UnavailableError, match="no colocated worker"):
            await client.complete("hi", model="tiny")
        with pytest.raises(UnavailableError):
            [c async for c in client.stream("hi", model="tiny")]
    async with heteroserve.AsyncClient(target, api_key="sk-wrong", transport=transport) as bad:
        with pytest.raises(AuthenticationError):
            await bad.models()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
async def test_retries_only_retryable_errors(gateway: tuple[str, str], transport: str) -> None:
    import httpx

    target = gateway[0] if transport == "rest" else gateway[1]
    policy = RetryPolicy(max_retries=3, backoff_seconds=0.01)
    async with heteroserve.AsyncClient(target, api_key=KEY, transport=transport, retry=policy) as client:
        with pytest.raises(UnavailableError):
            await client.complete("hi", model="tiny")  # 503: 1 + 3 attempts
        with pytest.raises(InvalidRequestError):
            await client.complete("", model="tiny")  # 400: 1 attempt
    async with httpx.AsyncClient() as http:  # the gateway runs on this event loop: never block it
        metrics = (await http.get(f"{gateway[0]}/metrics")).text
    assert f'heteroserve_gateway_requests_total{{status="503",transport="{transport}"}} 4.0' in metrics


async def test_rest_unreachable_gateway_is_unavailable() -> None:
    """Nothing listens on the port: both the JSON and the streaming path raise `UnavailableError`."""
    policy = RetryPolicy(max_retries=0)
    async with heteroserve.AsyncClient(f"http://127.0.0.1:{free_port()}", retry=policy) as client:
        with pytest.raises(UnavailableError, match="cannot reach the gateway"):
            await client.models()
        with pytest.raises(UnavailableError, match="cannot reach the gateway"):
            [c async for c in client.stream("hi", model="tiny")]


def test_retry_policy_backoff() -> None:
    import random

    policy = RetryPolicy(max_retries=2, backoff_seconds=0.1, max_backoff_seconds=0.3)
    rng = random.Random(0)
    delays = [policy.delay(k, rng) for k in (1, 2, 3, 4)]
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2 and all(0.15 <= d <= 0.3 for d in delays[2:])
    assert policy.should_retry(UnavailableError("x"), 2) and not policy.should_retry(UnavailableError("x"), 3)
    assert not policy.should_retry(InvalidRequestError("x"), 1)
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_sdk_imports_without_torch() -> None:
    code = ("import sys, heteroserve; heteroserve.Client; heteroserve.AsyncClient; "
            "import heteroserve.client.rest, heteroserve.client.grpc; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
