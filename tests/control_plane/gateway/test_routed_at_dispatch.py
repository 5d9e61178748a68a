"""The gateway's routed-prefix table learns where a prompt went when it is dispatched, before its first
token: a request sharing the prefix that arrives while the first one still waits then follows it (bench
routing found every load-routed prefix miss arrived before its source's first token). Real worker
process, real Redis registry, the real ClusterView and Orchestrator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cache.hashing import HashKeys, hash_prompt_blocks
from common.localredis import LocalRedis
from control_plane.orchestrator.cluster import ClusterView
from control_plane.orchestrator.config import OrchestratorConfig
from control_plane.orchestrator.orchestrator import Orchestrator
from control_plane.orchestrator.prefix import NoPrefixIndex
from control_plane.orchestrator.routes import DEFAULT_ROUTE
from control_plane.orchestrator.types import Event, GenerateJob, Sampling
from control_plane.router import InflightTracker, Router, RouterConfig
from tests.control_plane.gateway.gateway_procs import CLUSTER_TOKEN, start_worker

pytestmark = pytest.mark.slow
PROMPT = tuple(range(10, 74))  # 64 tokens: 4 full blocks
HASHES = hash_prompt_blocks(list(PROMPT), HashKeys("tiny"), 16)


async def test_prompt_is_remembered_on_its_worker_before_its_first_token(tiny_model_dir: Path,
                                                                         gw_redis: LocalRedis) -> None:
    import redis.asyncio as aioredis

    worker = start_worker(tiny_model_dir, gw_redis.url, "disp-0")
    client = aioredis.Redis.from_url(gw_redis.url)
    inflight = InflightTracker()
    view = ClusterView(client, CLUSTER_TOKEN, inflight)
    orchestrator = Orchestrator(view, Router(RouterConfig(policy="prefix_aware")), inflight, NoPrefixIndex(),
                                OrchestratorConfig())
    job = GenerateJob(request_id="r1", model="tiny", prompt_token_ids=PROMPT, sampling=Sampling(max_tokens=4))
    events: list[Event] = []

    async def consume() -> None:
        async for event in orchestrator.generate(job, HASHES, DEFAULT_ROUTE):
            events.append(event)

    try:
        await view.refresh()
        assert [w.worker_id for w in view.snapshot() if w.worker_id == "disp-0"] == ["disp-0"]
        assert orchestrator.routed.match(HASHES).worker_blocks == {}
        task = asyncio.create_task(consume())
        await asyncio.sleep(0)  # one turn: routed and sent, but no reply can have been read yet
        assert inflight.in_flight("disp-0") == 1 and events == []
        assert orchestrator.routed.match(HASHES).worker_blocks == {"disp-0": len(HASHES)}
        await task
        assert events and orchestrator.routed.match(HASHES).worker_blocks == {"disp-0": len(HASHES)}
    finally:
        await view.stop()
        await client.aclose()
        worker.stop()
