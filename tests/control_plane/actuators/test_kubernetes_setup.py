"""kubernetes_setup: the chart's kubernetes.yaml parses into the configs; the drain sends the real RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from common.errors import ConfigError, UnavailableError
from control_plane.actuators.base import DrainTarget
from control_plane.actuators.kubernetes_setup import (
    kubernetes_actuator_factory,
    load_kubernetes_settings,
    worker_drain_fn,
)
from heteroserve.v1 import worker_pb2, worker_pb2_grpc

FILE = """
actuator:
  namespace: serving
  instance: hs
  deployment_prefix: hs-heteroserve-worker-
  pools: ["l4-decode", "h100-prefill"]
  drain_timeout_seconds: 45
  labels:
    gpu_product_aliases: {NVIDIA-L4: l4}
lease:
  namespace: serving
  name: hs-heteroserve-planner
"""


def test_settings_parse(tmp_path: Path):
    path = tmp_path / "kubernetes.yaml"
    path.write_text(FILE)
    settings = load_kubernetes_settings(path)
    assert settings.actuator.pools == ("l4-decode", "h100-prefill")
    assert settings.actuator.drain_timeout_seconds == 45.0
    assert settings.actuator.labels.gpu_product_aliases == {"NVIDIA-L4": "l4"}
    assert settings.lease is not None and settings.lease.name == "hs-heteroserve-planner"
    assert kubernetes_actuator_factory(path, "token", CollectorRegistry()) is not None


def test_bad_field_is_named(tmp_path: Path):
    path = tmp_path / "kubernetes.yaml"
    path.write_text(FILE.replace("drain_timeout_seconds: 45", "drain_timeout_seconds: -1"))
    with pytest.raises(ConfigError, match=r"kubernetes\.yaml: actuator: drain_timeout_seconds: -1\.0 must"):
        load_kubernetes_settings(path)


class DrainServicer(worker_pb2_grpc.WorkerServicer):
    """A real gRPC Worker service answering Drain only; records the requests and their tokens."""

    def __init__(self, drained: bool) -> None:
        self.drained = drained
        self.seen: list[tuple[float, str]] = []

    async def Drain(self, request: worker_pb2.DrainRequest, context: aio.ServicerContext):
        token = dict(context.invocation_metadata()).get("authorization", "")
        if token != "Bearer secret-token":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        self.seen.append((request.timeout_seconds, token))
        return worker_pb2.DrainResponse(drained=self.drained, remaining=0 if self.drained else 2)


async def serve(servicer: DrainServicer) -> AsyncIterator[str]:
    server = aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_drain_sends_the_rpc_with_the_cluster_token():
    servicer = DrainServicer(drained=True)
    async for address in serve(servicer):
        drain = worker_drain_fn("secret-token", timeout_seconds=7.0)
        await drain(DrainTarget(pool="l4-decode", name="w-1", address=address))
    assert servicer.seen == [(7.0, "Bearer secret-token")]


async def test_drain_that_did_not_finish_is_an_error():
    servicer = DrainServicer(drained=False)
    async for address in serve(servicer):
        drain = worker_drain_fn("secret-token", timeout_seconds=1.0)
        with pytest.raises(UnavailableError, match="still had 2 request"):
            await drain(DrainTarget(pool="l4-decode", name="w-1", address=address))
