"""The profiler's colocated-only form (a vLLM node type: no PullKV, so no prefill source): which
worker sets it accepts, and that it needs the KV bytes per token from the caller. The measurement
itself runs against a real vLLM worker in tests/e2e/test_mixed_fleet_e2e.py."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.profiler.grid import FIRST_START_GRID
from control_plane.profiler.run import Identity, RoleWorkers, profile_node
from workerrpc.client import WorkerClient


def test_only_a_lone_colocated_worker_may_go_without_a_prefill_worker() -> None:
    async def run() -> None:  # a grpc.aio channel is made inside a running event loop
        async with WorkerClient("127.0.0.1:1", "token") as colocated:
            RoleWorkers(colocated, None, None)  # a vLLM node type
            with pytest.raises(ValueError, match="prefill: required"):
                RoleWorkers(None, None, None)
            with pytest.raises(ValueError, match="prefill: required"):
                RoleWorkers(colocated, None, colocated)  # a decode worker needs its KV source

    asyncio.run(run())


def test_a_profile_without_a_transfer_needs_the_kv_bytes_per_token() -> None:
    async def run() -> None:
        # refused before any call: nothing listens on the address
        async with WorkerClient("127.0.0.1:1", "token") as colocated:
            identity = Identity(model="tiny", node_type="cpu-vllm", device="cpu", engine="vllm")
            with pytest.raises(ValueError, match="kv_bytes_per_token"):
                await profile_node(RoleWorkers(colocated, None, None), FIRST_START_GRID, identity)

    asyncio.run(run())
