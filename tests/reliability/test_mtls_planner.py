"""Planner → worker on mutual TLS: the `LocalActuator` (embedded planner) starts workers with the worker
certificate and drains one over mTLS with the planner certificate while a stream runs on it; a planner
certificate of another CA cannot drain anything. Real worker processes, Redis and certificates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.certs import ClusterCA
from common.errors import UnavailableError
from common.tls import ClientTLS
from control_plane.actuators.base import DrainTarget, PoolTarget
from control_plane.actuators.local import LocalActuator, LocalActuatorConfig
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.client import WorkerClient

pytestmark = pytest.mark.slow
TOKEN = "mtls-planner-token"


def pool(replicas: int) -> PoolTarget:
    return PoolTarget(pool="cpu-a", node_type="cpu-local", role="colocated", device="cpu", model="tiny",
                      replicas=replicas)


async def test_planner_drains_over_mtls(redis_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    ca = ClusterCA.create(tmp_path / "ca")
    planner, gateway = ca.issue("planner", tmp_path / "planner"), ca.issue("gateway", tmp_path / "gateway")
    ca.issue("worker", tmp_path / "worker")
    config = LocalActuatorConfig(model_dir=tiny_model_dir, redis_url=redis_url, run_dir=tmp_path / "run",
                                 cluster_token=TOKEN, kv_cache_mb=16, ready_timeout_seconds=120,
                                 tls=planner, worker_tls_dir=tmp_path / "worker")
    actuator = LocalActuator(config)
    try:
        await actuator.apply([pool(2)])
        newest = actuator.workers()[-1]
        # a planner of another CA: its Drain never reaches the worker
        rogue = ClusterCA.create(tmp_path / "rogue-ca").issue("planner", tmp_path / "rogue",
                                                              ca_bundle=ca.cert_pem)
        rogue_config = LocalActuatorConfig(model_dir=tiny_model_dir, redis_url=redis_url,
                                           run_dir=tmp_path / "rogue-run", cluster_token=TOKEN, tls=rogue)
        with pytest.raises(UnavailableError):
            target = DrainTarget("cpu-a", newest.worker_id, newest.address)
            await LocalActuator(rogue_config)._drain_rpc(target)
        request = worker_pb2.GenerateRequest(
            request_id="inflight", prompt_token_ids=list(range(5, 69)),
            sampling=common_pb2.SamplingParams(max_tokens=120, ignore_eos=True))
        async with WorkerClient(newest.address, TOKEN, tls=ClientTLS(gateway)) as worker:
            assert not (await worker.stats()).draining  # the rogue drain did nothing
            stream = worker.generate(request)
            first = await stream.__anext__()

            async def rest() -> list[common_pb2.TokenChunk]:
                return [chunk async for chunk in stream]

            collecting = asyncio.create_task(rest())
            result = await actuator.apply([pool(1)])  # drains `newest` over mTLS, then stops it
            chunks = [first, *await collecting]
        assert [d.name for d in result.drained] == [newest.worker_id] and not result.drain_failures
        assert sum(len(c.token_ids) for c in chunks) == 120 and chunks[-1].finish_reason == "length"
        assert "uses mutual TLS" in newest.log_path.read_text()
    finally:
        await actuator.close()
