"""The `Session` RPC on a real worker in this process (real engine, real gRPC on 127.0.0.1): the protocol
(tags, error events, cancel) with the raw stub, and `WorkerClient.session_generate` on top of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.errors import AuthenticationError, InvalidRequestError, UnavailableError
from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from tests.workers.service.worker_procs import inprocess_server, one_method_server
from workerrpc.client import WorkerClient
from workers.service.server import WorkerServer

TOKEN = "session-cluster-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
async def server(tiny_model_dir: Path) -> AsyncIterator[WorkerServer]:
    worker = inprocess_server(tiny_model_dir, "sess", TOKEN)
    await worker.start()
    yield worker
    await worker.stop()


def request(prompt: list[int], max_tokens: int = 5, **sampling: object) -> worker_pb2.GenerateRequest:
    return worker_pb2.GenerateRequest(request_id=f"r{prompt[0]}", prompt_token_ids=prompt,
                                      sampling=common_pb2.SamplingParams(max_tokens=max_tokens, **sampling))


def outcomes(server: WorkerServer, status: str) -> float:
    value = server.registry.get_sample_value("heteroserve_worker_requests_total",
                                             {"method": "Session.Generate", "status": status})
    return value or 0.0


async def idle(client: WorkerClient) -> worker_pb2.WorkerStats:
    for _ in range(100):
        stats = await client.stats()
        if stats.num_running == 0 and stats.num_waiting == 0:
            break
        await asyncio.sleep(0.05)
    return stats


async def test_concurrent_generations_share_one_session_and_match_generate(server: WorkerServer) -> None:
    prompts = [[5, 6, 7], [9, 10, 11, 12], [20, 21]]
    async with WorkerClient(server.address, TOKEN) as client:
        expected = [[t for c in [c async for c in client.generate(request(p))] for t in c.token_ids]
                    for p in prompts]

        async def one(prompt: list[int]) -> list[int]:
            return [t async for c in client.session_generate(request(prompt)) for t in c.token_ids]

        got = await asyncio.gather(*(one(p) for p in prompts))
        again = await one(prompts[0])  # the same stream serves later generations
    assert got == expected and again == expected[0]
    assert outcomes(server, "ok") == 4


class Events:
    """The events of a raw Session call one at a time (the worker sends them in batches)."""

    def __init__(self, call: aio.StreamStreamCall) -> None:
        self.call = call
        self.pending: list[worker_pb2.SessionEvent] = []

    async def read(self) -> worker_pb2.SessionEvent:
        while not self.pending:
            message = await self.call.read()
            assert message is not aio.EOF, "the session ended"
            assert message.events, "an empty batch"
            self.pending.extend(message.events)
        return self.pending.pop(0)


async def test_protocol_tags_errors_and_cancel(server: WorkerServer) -> None:
    async with aio.insecure_channel(server.address) as channel:
        call = worker_pb2_grpc.WorkerStub(channel).Session(metadata=METADATA)
        events = Events(call)
        await call.write(worker_pb2.SessionRequest(tag=1, generate=request([5, 6], max_tokens=3000,
                                                                              ignore_eos=True)))
        first = await events.read()
        assert first.tag == 1 and first.WhichOneof("kind") == "chunk"
        # A bad generation fails alone, with the status and field a per-call Generate would give.
        await call.write(worker_pb2.SessionRequest(tag=2, generate=request([5], max_tokens=0)))
        # A tag that is still running is refused.
        await call.write(worker_pb2.SessionRequest(tag=1, generate=request([7])))
        errors: dict[int, worker_pb2.SessionError] = {}
        while len(errors) < 2:
            event = await events.read()
            if event.WhichOneof("kind") == "error":
                errors[event.tag] = event.error
        assert errors[2].code == "INVALID_ARGUMENT" and errors[2].message.startswith("sampling.max_tokens:")
        assert errors[1].code == "INVALID_ARGUMENT" and "tag: 1 is already running" in errors[1].message
        await call.write(worker_pb2.SessionRequest(tag=1, cancel=True))
        async with WorkerClient(server.address, TOKEN) as client:
            stats = await idle(client)
        assert (stats.num_running, stats.num_waiting) == (0, 0) and stats.generated_tokens_total < 3000
        # The stream is still up: a new generation on it finishes.
        await call.write(worker_pb2.SessionRequest(tag=3, generate=request([5, 6, 7])))
        while (event := await events.read()).tag != 3 or not event.chunk.finish_reason:
            pass
        await call.done_writing()
        assert await call.read() is aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    assert outcomes(server, "cancelled") == 1 and outcomes(server, "invalid_argument") == 1


async def test_abandoned_generation_is_aborted_on_the_worker(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN) as client:
        stream = client.session_generate(request([5, 6, 7], max_tokens=3000, ignore_eos=True))
        await anext(stream)
        await stream.aclose()  # the caller went away
        stats = await idle(client)
        assert (stats.num_running, stats.num_waiting) == (0, 0) and stats.generated_tokens_total < 3000
        assert [t async for c in client.session_generate(request([9, 9])) for t in c.token_ids]


async def test_errors_reach_the_caller_as_domain_errors(server: WorkerServer) -> None:
    async with WorkerClient(server.address, "not-the-token") as stranger:
        with pytest.raises(AuthenticationError, match="cluster token"):
            [c async for c in stranger.session_generate(request([5]))]
    async with WorkerClient(server.address, TOKEN) as client:
        with pytest.raises(InvalidRequestError, match=r"^prompt_token_ids: "):
            [c async for c in client.session_generate(request([5, 99999]))]
        assert (await client.drain(timeout_seconds=5)).drained
        with pytest.raises(UnavailableError, match="draining"):
            [c async for c in client.session_generate(request([5]))]


async def test_stopping_worker_ends_its_sessions(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN) as client:
        stream = client.session_generate(request([5, 6], max_tokens=3000, ignore_eos=True))
        await anext(stream)
        await server.stop()
        with pytest.raises(UnavailableError):
            async for _ in stream:
                pass


async def _older_generate(request: worker_pb2.GenerateRequest,
                          context: aio.ServicerContext) -> AsyncIterator[common_pb2.TokenChunk]:
    yield common_pb2.TokenChunk(token_ids=[1], text="a", prompt_tokens=2)
    yield common_pb2.TokenChunk(token_ids=[2], text="b", finish_reason="length")


async def test_worker_without_session_is_asked_per_call() -> None:
    """A worker built before `Session` existed serves `Generate` only (mid rolling upgrade)."""
    generate = grpc.unary_stream_rpc_method_handler(
        _older_generate, request_deserializer=worker_pb2.GenerateRequest.FromString,
        response_serializer=common_pb2.TokenChunk.SerializeToString)
    async with one_method_server("Generate", generate) as address, WorkerClient(address, "") as client:
        for _ in range(2):
            chunks = [c async for c in client.session_generate(request([7, 8]))]
            assert [(list(c.token_ids), c.finish_reason) for c in chunks] == [([1], ""), ([2], "length")]


async def test_ready_events_travel_in_one_message() -> None:
    """`SessionHandler` with a generation function that has all its chunks at once (the handler is the
    unit here; the engine path is covered above): they go out as one batch, in order."""
    from workers.service.session import SessionHandler

    async def three_chunks(request: worker_pb2.GenerateRequest) -> AsyncIterator[common_pb2.TokenChunk]:
        for i in range(3):
            yield common_pb2.TokenChunk(token_ids=[i], finish_reason="length" if i == 2 else "")

    async def one_request() -> AsyncIterator[worker_pb2.SessionRequest]:
        yield worker_pb2.SessionRequest(tag=7, generate=request([5]))

    outcomes: list[tuple[str, str]] = []
    handler = SessionHandler(three_chunks, lambda method, status: outcomes.append((method, status)))
    messages = [m async for m in handler.serve(one_request())]
    assert [[(e.tag, list(e.chunk.token_ids)) for e in m.events] for m in messages] == \
        [[(7, [0]), (7, [1]), (7, [2])]]
    assert outcomes == [("Session.Generate", "ok")]


async def test_hung_worker_breaks_its_session_by_keepalive(tiny_model_dir: Path) -> None:
    """A worker process that stops answering (SIGSTOP: its kernel still holds the connection open) must
    not hold a session forever: the client's HTTP/2 keepalive pings go unanswered and the stream breaks,
    failing its generations with UNAVAILABLE (retryable). The gateway pings every 10 s; this client every
    1 s, which the worker's server options allow."""
    import signal
    import time

    from tests.workers.service.worker_procs import CLUSTER_TOKEN, start_worker

    worker = start_worker(tiny_model_dir, worker_id="hangs")
    options = (("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 1000),
               ("grpc.http2.ping_timeout_ms", 1000), ("grpc.http2.max_pings_without_data", 0))
    try:
        async with WorkerClient(worker.address, CLUSTER_TOKEN, channel_options=options) as client:
            stream = client.session_generate(request([5, 6, 7], max_tokens=3000, ignore_eos=True))
            await anext(stream)
            worker.proc.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            with pytest.raises(UnavailableError, match="ping timeout"):
                async with asyncio.timeout(60):  # without keepalive: TimeoutError here, not UNAVAILABLE
                    async for _ in stream:
                        pass
            assert time.monotonic() - stopped_at < 30
    finally:
        worker.proc.send_signal(signal.SIGCONT)
        worker.stop()


async def test_a_session_that_breaks_fails_its_generations_as_retryable() -> None:
    """A stream that ends with an error of its own (here a server that ends the call with INTERNAL at
    once; gRPC also reports a write racing the end of a call as INTERNAL) says nothing about the
    generations on it: they fail with UNAVAILABLE, which the orchestrator retries elsewhere."""

    async def breaks(requests: AsyncIterator[worker_pb2.SessionRequest],
                     context: aio.ServicerContext) -> AsyncIterator[worker_pb2.SessionEvents]:
        await context.abort(grpc.StatusCode.INTERNAL, "transport trouble")
        yield worker_pb2.SessionEvents()  # pragma: no cover - makes this an async generator

    session = grpc.stream_stream_rpc_method_handler(
        breaks, request_deserializer=worker_pb2.SessionRequest.FromString,
        response_serializer=worker_pb2.SessionEvents.SerializeToString)
    async with one_method_server("Session", session) as address, WorkerClient(address, "") as client:
        with pytest.raises(UnavailableError, match="broke: INTERNAL transport trouble") as info:
            [c async for c in client.session_generate(request([5]))]
        assert info.value.retryable
