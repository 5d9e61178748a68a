"""The auth and error interceptors on a real grpc.aio server (loopback) with a small test servicer.

The servicer here is not an engine stand-in: it only raises chosen errors, so the status mapping of
the interceptors can be checked exactly. The real servicer is exercised in test_worker_process.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.errors import (
    AuthenticationError,
    CapacityError,
    HeteroserveError,
    InvalidRequestError,
    UnavailableError,
)
from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from workerrpc.client import WorkerClient
from workers.service.interceptors import INTERNAL_MESSAGE, AuthInterceptor, ErrorInterceptor

TOKEN = "cluster-token-for-tests"
Served = tuple[str, list[tuple[str, str]]]  # the server's address, and its (method, outcome) reports


class RaisingServicer(worker_pb2_grpc.WorkerServicer):
    async def Stats(self, request: worker_pb2.StatsRequest,
                    context: aio.ServicerContext) -> worker_pb2.WorkerStats:
        raise RuntimeError("leaky internal detail")

    async def Prefill(self, request: worker_pb2.PrefillRequest,
                      context: aio.ServicerContext) -> worker_pb2.PrefillResponse:
        if request.request_id == "ok":
            return worker_pb2.PrefillResponse(worker_id="w")
        raise InvalidRequestError("must be in (0, 1], got 2.0", field="sampling.top_p")

    async def Generate(self, request: worker_pb2.GenerateRequest,
                       context: aio.ServicerContext) -> AsyncIterator[common_pb2.TokenChunk]:
        yield common_pb2.TokenChunk(token_ids=[1])
        raise CapacityError("worker is draining")


@pytest.fixture
async def server() -> AsyncIterator[Served]:
    outcomes: list[tuple[str, str]] = []
    record = ErrorInterceptor(lambda method, status: outcomes.append((method, status)))
    srv = aio.server(interceptors=[AuthInterceptor(TOKEN), record])
    worker_pb2_grpc.add_WorkerServicer_to_server(RaisingServicer(), srv)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    await health_servicer.set("heteroserve.v1.Worker", health_pb2.HealthCheckResponse.SERVING)
    yield f"127.0.0.1:{port}", outcomes
    await srv.stop(grace=None)


async def test_domain_errors_keep_status_and_field(server: Served) -> None:
    address, outcomes = server
    async with WorkerClient(address, TOKEN) as client:
        with pytest.raises(InvalidRequestError, match=r"sampling\.top_p: must be in \(0, 1\]"):
            await client.prefill(worker_pb2.PrefillRequest(request_id="bad"))
        got: list[common_pb2.TokenChunk] = []
        with pytest.raises(UnavailableError, match="draining"):
            async for chunk in client.generate(worker_pb2.GenerateRequest()):
                got.append(chunk)
        assert [list(c.token_ids) for c in got] == [[1]]
        assert (await client.prefill(worker_pb2.PrefillRequest(request_id="ok"))).worker_id == "w"
    assert outcomes == [("Prefill", "invalid_argument"), ("Generate", "unavailable"), ("Prefill", "ok")]


async def test_unexpected_error_is_internal_with_generic_message(server: Served) -> None:
    address, outcomes = server
    async with WorkerClient(address, TOKEN) as client:
        with pytest.raises(HeteroserveError) as info:
            await client.stats()
        assert str(info.value) == INTERNAL_MESSAGE and "leaky" not in str(info.value)
        assert (await client.prefill(worker_pb2.PrefillRequest(request_id="ok"))).worker_id == "w"
    assert outcomes == [("Stats", "internal"), ("Prefill", "ok")]


@pytest.mark.parametrize("token", ["", "wrong-token-of-some-length"])
async def test_missing_or_wrong_token_is_unauthenticated(server: Served, token: str) -> None:
    address, outcomes = server
    async with WorkerClient(address, token) as client:
        with pytest.raises(AuthenticationError, match="cluster token"):
            await client.prefill(worker_pb2.PrefillRequest(request_id="ok"))
        with pytest.raises(AuthenticationError):
            async for _ in client.generate(worker_pb2.GenerateRequest()):
                pass
        assert await client.health()  # probes stay open without the token
    assert outcomes == []  # nothing reached the servicer


async def test_raw_grpc_status_codes(server: Served) -> None:
    address, _ = server
    async with aio.insecure_channel(address) as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            await stub.Prefill(worker_pb2.PrefillRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            await stub.Prefill(worker_pb2.PrefillRequest(), metadata=(("authorization", TOKEN),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

