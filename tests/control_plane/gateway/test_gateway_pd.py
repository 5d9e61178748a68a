"""P/D orchestration with real prefill, decode and colocated workers and a published plan."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import heteroserve
from common.localredis import LocalRedis
from control_plane.plan_store import PlanStore
from tests.control_plane.gateway.gateway_procs import (
    ADMIN_TOKEN,
    API_KEY,
    Gateway,
    Worker,
    start_gateway,
    start_worker,
    wait_for_workers,
)

pytestmark = pytest.mark.slow
LONG = " ".join(f"paragraph {i} of a long document to summarise" for i in range(8))
PLAN = {"pools": [{"name": "pf", "role": "prefill"}, {"name": "dc", "role": "decode"},
                  {"name": "co", "role": "colocated"}],
        "routing": {"default": {"pf": 1.0, "dc": 1.0}}}


async def _publish(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await PlanStore(client).publish(PLAN, leader="test", reason="pd test")
    await client.aclose()


@pytest.fixture(scope="module")
def pd_cluster(tiny_model_dir: Path, gw_redis: LocalRedis,
               keys_file: Path) -> Iterator[tuple[Gateway, dict[str, Worker]]]:
    import redis

    redis.Redis.from_url(gw_redis.url).flushall()
    workers = {"p-0": start_worker(tiny_model_dir, gw_redis.url, "p-0", role="prefill", pool="pf",
                                   shared_tier=True),
               "d-0": start_worker(tiny_model_dir, gw_redis.url, "d-0", role="decode", pool="dc",
                                   shared_tier=True),
               "c-0": start_worker(tiny_model_dir, gw_redis.url, "c-0", pool="co")}
    asyncio.run(_publish(gw_redis.url))
    gateway = start_gateway(tiny_model_dir, gw_redis.url, keys_file, "--pd-min-uncached-tokens", "32")
    try:
        wait_for_workers(gateway, 3)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            plan = httpx.get(f"{gateway.http_url}/admin/plan", timeout=5,
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
            if plan.get("in_use_version") == 1:
                break
            time.sleep(0.2)
        yield gateway, workers
    finally:
        gateway.stop()
        for w in workers.values():
            w.stop()


def test_long_prompt_takes_pd_path_with_colocated_output(
        pd_cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, _ = pd_cluster
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        pd = client.complete(LONG, model="tiny", max_tokens=20, ignore_eos=True)
        short = client.complete("short prompt", model="tiny", max_tokens=4)
    assert pd.route.disaggregated and pd.route.prefill_worker_id == "p-0" and pd.route.worker_id == "d-0"
    assert len(pd.token_ids) == 20
    assert not short.route.disaggregated and short.route.worker_id == "c-0"
    # now mostly cached, the same prompt goes colocated: computed start to finish on c-0, same tokens
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        again = client.complete(LONG, model="tiny", max_tokens=20, ignore_eos=True)
    assert not again.route.disaggregated and again.route.worker_id == "c-0"
    assert again.token_ids == pd.token_ids


def test_pd_falls_back_to_colocated_without_prefill_worker(
        pd_cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, workers = pd_cluster
    workers["p-0"].kill()
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        other = " ".join(f"section {i} of another document, never seen before" for i in range(8))
        done = client.complete(other, model="tiny", max_tokens=8)
    assert not done.route.disaggregated and done.route.worker_id == "c-0"
    metrics = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    assert "heteroserve_gateway_pd_fallbacks_total 1.0" in metrics
