"""LocalActuator with real `heteroserve worker` processes, a real Redis and real gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.registry import list_workers
from control_plane.actuators.base import PoolTarget
from control_plane.actuators.local import LocalActuator, LocalActuatorConfig
from heteroserve.embedded.processes import pid_alive
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.client import WorkerClient

pytestmark = pytest.mark.slow
TOKEN = "test-cluster-token-123"


def target(pool: str, replicas: int, role: str = "colocated", device: str = "cpu") -> PoolTarget:
    return PoolTarget(pool=pool, node_type=f"{device}-local", role=role, device=device, model="tiny",
                      replicas=replicas)


async def test_actuator_converges_and_drains_without_failing_requests(
        redis_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = LocalActuatorConfig(model_dir=tiny_model_dir, redis_url=redis_url, run_dir=tmp_path,
                                 cluster_token=TOKEN, kv_cache_mb=16, ready_timeout_seconds=120)
    actuator = LocalActuator(config)
    client = aioredis.Redis.from_url(redis_url)
    try:
        result = await actuator.apply([target("cpu-a", 2)])
        assert [(c.pool, c.from_replicas, c.to_replicas) for c in result.changes] == [("cpu-a", 0, 2)]
        assert await actuator.current() == {"cpu-a": 2}
        registered = {w.worker_id for w in await list_workers(client)}
        assert registered == {w.worker_id for w in actuator.workers()}
        assert len(list((tmp_path / "workers").glob("*.json"))) == 2
        again = await actuator.apply([target("cpu-a", 2)])
        assert not again.changed  # idempotent

        newest = actuator.workers()[-1]
        pids = [w.proc.pid for w in actuator.workers()]
        request = worker_pb2.GenerateRequest(
            request_id="inflight-1", prompt_token_ids=list(range(5, 69)),
            sampling=common_pb2.SamplingParams(max_tokens=120, ignore_eos=True))
        async with WorkerClient(newest.address, TOKEN) as worker:
            stream = worker.generate(request)
            first = await stream.__anext__()

            async def rest() -> list[common_pb2.TokenChunk]:
                return [chunk async for chunk in stream]

            collecting = asyncio.create_task(rest())
            result = await actuator.apply([target("cpu-a", 1)])
            chunks = [first, *await collecting]
        tokens = [t for c in chunks for t in c.token_ids]
        assert len(tokens) == 120 and chunks[-1].finish_reason == "length"
        assert [d.name for d in result.drained] == [newest.worker_id] and not result.drain_failures
        assert await actuator.current() == {"cpu-a": 1}
        assert not pid_alive(pids[1]) and pid_alive(pids[0])
        assert len(list((tmp_path / "workers").glob("*.json"))) == 1

        # a worker that dies on its own is forgotten, and re-applying the same targets replaces it
        crashed = actuator.workers()[0]
        crashed.proc.kill()
        crashed.proc.wait()
        assert await actuator.current() == {"cpu-a": 0}
        result = await actuator.apply([target("cpu-a", 1)])
        assert [(c.from_replicas, c.to_replicas) for c in result.changes] == [(0, 1)]
        assert await actuator.current() == {"cpu-a": 1} and actuator.workers()[0] is not crashed
    finally:
        survivors = [w.proc.pid for w in actuator.workers()]
        await actuator.close()
        await client.aclose()
    assert survivors and not any(pid_alive(p) for p in survivors)
    assert not list((tmp_path / "workers").glob("*.json"))


async def test_worker_binds_its_own_port_and_restarts_when_its_metrics_port_was_taken(
        redis_url: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gRPC port comes from the worker's registration (it bound port 0); a metrics port another
    process took between the pick and the worker's bind makes the actuator start the worker again."""
    import socket

    from control_plane.actuators import local

    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])
    real_free_port = local.free_port
    monkeypatch.setattr(local, "free_port", lambda: next(picks, None) or real_free_port())
    config = LocalActuatorConfig(model_dir=tiny_model_dir, redis_url=redis_url, run_dir=tmp_path,
                                 cluster_token=TOKEN, kv_cache_mb=16, ready_timeout_seconds=120)
    actuator = LocalActuator(config)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await actuator.apply([target("cpu-m", 1)])
        [worker] = actuator.workers()
        assert worker.metrics_port != taken.getsockname()[1]
        assert "cannot serve metrics on" in next(tmp_path.glob("logs/worker-cpu-m-*1.log")).read_text()
        [record] = await list_workers(client)
        assert worker.address == record.address and not record.address.endswith(":0")
        async with WorkerClient(record.address, TOKEN) as rpc:
            assert await rpc.health()
    finally:
        taken.close()
        await actuator.close()
        await client.aclose()
