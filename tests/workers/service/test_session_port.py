"""The worker's plain session port (workers/service/session_port.py) and its client
(workerrpc/stream_session.py), on a real worker (in this process, or a `heteroserve worker` process for
the kill): discovery over gRPC, the token handshake, cancellation, the fallback to gRPC, and a worker
killed while a generation streams over the port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.errors import UnavailableError
from heteroserve.v1 import common_pb2, worker_pb2
from tests.workers.service.worker_procs import CLUSTER_TOKEN, inprocess_server, start_worker
from workerrpc.client import WorkerClient
from workerrpc.frames import ACCEPTED, HELLO, MAX_HELLO_BYTES, FrameReader, frame
from workers.service.server import WorkerServer
from workers.service.session_port import REFUSED

TOKEN = "session-port-token"


@pytest.fixture
async def server(tiny_model_dir: Path) -> AsyncIterator[WorkerServer]:
    worker = inprocess_server(tiny_model_dir, "port", TOKEN)
    await worker.start()
    yield worker
    await worker.stop()


def request(prompt: list[int], max_tokens: int = 5, **sampling: object) -> worker_pb2.GenerateRequest:
    return worker_pb2.GenerateRequest(request_id=f"p{prompt[0]}", prompt_token_ids=prompt,
                                      sampling=common_pb2.SamplingParams(max_tokens=max_tokens, **sampling))


def outcomes(server: WorkerServer, status: str) -> float:
    value = server.registry.get_sample_value("heteroserve_worker_requests_total",
                                             {"method": "Session.Generate", "status": status})
    return value or 0.0


def port_connections(server: WorkerServer) -> int:
    assert server.session_port is not None
    return len(server.session_port._connections)


async def tokens(client: WorkerClient, prompt: list[int]) -> list[int]:
    return [t async for c in client.session_generate(request(prompt)) for t in c.token_ids]


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_generations_move_to_the_port_learnt_over_grpc_and_match_generate(server: WorkerServer) -> None:
    assert server.session_port is not None and server.session_port.port > 0
    prompts = [[5, 6, 7], [9, 10, 11, 12], [20, 21]]
    async with WorkerClient(server.address, TOKEN) as client:
        expected = [[t for c in [c async for c in client.generate(request(p))] for t in c.token_ids]
                    for p in prompts]
        assert await tokens(client, prompts[0]) == expected[0]  # over gRPC: learns the port
        assert client._session.stream_port == server.session_port.port
        assert port_connections(server) == 0
        got = await asyncio.gather(*(tokens(client, p) for p in prompts))  # over the port
        assert port_connections(server) == 1  # one connection carries them all
        assert client._fast is not None and client._fast._conn is not None
        sock = client._fast._conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # a vanished host is noticed
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
    assert got == expected
    assert outcomes(server, "ok") == 4


async def test_many_concurrent_generations_on_one_connection_each_get_their_own_tokens(
        server: WorkerServer) -> None:
    prompts = [[5 + i, 6 + i, 7 + (i * 7) % 50] for i in range(48)]
    async with WorkerClient(server.address, TOKEN) as client:
        expected = [await tokens(client, p) for p in prompts[:4]]  # the first over gRPC, then the port
        got = await asyncio.gather(*(tokens(client, p) for p in prompts))
        assert port_connections(server) == 1
        again = [await tokens(client, p) for p in prompts[:4]]
    assert got[:4] == expected == again  # greedy: tokens depend on the prompt alone, not on batching
    assert all(len(t) == 5 for t in got)
    assert outcomes(server, "ok") == 4 + 48 + 4


async def test_a_client_told_not_to_use_the_port_stays_on_grpc(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN, session_port=False) as client:
        await tokens(client, [5, 6, 7])
        await tokens(client, [5, 6, 7])
    assert port_connections(server) == 0 and outcomes(server, "ok") == 2


async def test_a_wrong_token_is_refused_and_closed(server: WorkerServer) -> None:
    assert server.session_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.session_port.port)
    writer.write(frame(HELLO + b"not-the-token"))
    writer.write(frame(worker_pb2.SessionRequest(tag=1, generate=request([5, 6])).SerializeToString()))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)  # until the worker closes the connection
    assert FrameReader().feed(data) == [REFUSED]
    writer.close()
    assert outcomes(server, "ok") == 0 and outcomes(server, "cancelled") == 0


@pytest.mark.parametrize("first", [
    frame(b"x" * (MAX_HELLO_BYTES + 1)),  # a stranger's huge first frame: refused before it is buffered
    b"\xff\xff\xff\xff",  # a length of 4 GiB
])
async def test_an_oversized_first_frame_closes_the_connection_and_the_port_keeps_serving(
        server: WorkerServer, first: bytes) -> None:
    assert server.session_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.session_port.port)
    writer.write(first)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()
    async with WorkerClient(server.address, TOKEN) as client:
        expected = await tokens(client, [5, 6, 7])
        assert await tokens(client, [5, 6, 7]) == expected and port_connections(server) == 1


async def test_a_malformed_request_after_the_handshake_closes_only_that_connection(
        server: WorkerServer) -> None:
    assert server.session_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.session_port.port)
    writer.write(frame(HELLO + TOKEN.encode()))
    await writer.drain()
    assert FrameReader().feed(await reader.readexactly(4 + len(ACCEPTED))) == [ACCEPTED]
    writer.write(frame(b"\x0a\xff\xff\xff\xff\x0f"))  # a field whose length runs past the message
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    async with WorkerClient(server.address, TOKEN) as client:
        await tokens(client, [5, 6, 7])
        assert len(await tokens(client, [5, 6, 7])) == 5


async def test_an_abandoned_generation_and_a_closed_connection_abort_on_the_worker(
        server: WorkerServer) -> None:
    long = {"max_tokens": 2000, "ignore_eos": True}
    async with WorkerClient(server.address, TOKEN) as client:
        await tokens(client, [5, 6, 7])  # learns the port
        chunks = client.session_generate(request([8, 9, 10], **long))
        assert (await anext(chunks)).token_ids
        await chunks.aclose()  # the caller stops reading: a cancel frame
        await until(lambda: outcomes(server, "cancelled") == 1)
        other = client.session_generate(request([11, 12, 13], **long))
        assert (await anext(other)).token_ids
        assert port_connections(server) == 1
    # the client closed (its connection with it) while `other` was running
    await until(lambda: outcomes(server, "cancelled") == 2)
    await until(lambda: server.engine.stats().num_running == 0)
    await other.aclose()


async def test_an_unreachable_port_falls_back_to_grpc(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN) as client:
        expected = await tokens(client, [5, 6, 7])
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        closed_port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        client._session.stream_port = closed_port  # as if the worker had named a port now gone
        assert await tokens(client, [5, 6, 7]) == expected
        assert client._session.stream_port is None  # forgotten until the gRPC session reopens
    assert port_connections(server) == 0


async def test_a_worker_killed_mid_stream_fails_the_generation_at_once_as_unavailable(
        tiny_model_dir: Path) -> None:
    worker = start_worker(tiny_model_dir)
    try:
        async with WorkerClient(worker.address, CLUSTER_TOKEN) as client:
            await tokens(client, [5, 6, 7])  # learns the port
            assert client._session.stream_port is not None
            chunks = client.session_generate(request([8, 9, 10], max_tokens=5000, ignore_eos=True))
            assert (await anext(chunks)).token_ids
            assert client._fast is not None and client._fast._conn is not None  # streaming over the port
            worker.proc.kill()
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="session connection"):
                async for _ in chunks:
                    pass
            assert time.monotonic() - started < 5.0
            with pytest.raises(UnavailableError):  # the next one: port refused, then gRPC fails too
                await tokens(client, [5, 6, 7])
    finally:
        worker.proc.kill()
        worker.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_fixed_session_port_is_the_one_bound_and_taught(tiny_model_dir: Path) -> None:
    """A fixed port (the Helm chart's, which its network policy admits) is bound as given, and clients
    move to it."""
    port = free_port()
    worker = inprocess_server(tiny_model_dir, "fixed", TOKEN, session_port=port)
    await worker.start()
    try:
        assert worker.session_port is not None and worker.session_port.port == port
        async with WorkerClient(worker.address, TOKEN) as client:
            await tokens(client, [5, 6, 7])
            await tokens(client, [5, 6, 7])
            assert client._session.stream_port == port
        assert port_connections(worker) == 0  # closed with the client
    finally:
        await worker.stop()


async def test_session_port_off_binds_none_and_clients_stay_on_grpc(tiny_model_dir: Path) -> None:
    worker = inprocess_server(tiny_model_dir, "off", TOKEN, session_port=None)
    await worker.start()
    try:
        assert worker.session_port is None
        async with WorkerClient(worker.address, TOKEN) as client:
            assert await tokens(client, [5, 6, 7]) == await tokens(client, [5, 6, 7])
            assert client._fast is None or client._fast._conn is None
        assert outcomes(worker, "ok") == 2
    finally:
        await worker.stop()


async def test_a_session_port_in_use_fails_the_start_naming_it(tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = inprocess_server(tiny_model_dir, "busy", TOKEN, session_port=port)
        with pytest.raises(UnavailableError, match=f"session port on 127.0.0.1:{port}"):
            await worker.start()


def test_session_port_flag_and_field_are_validated(tiny_model_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from common.errors import ConfigError
    from heteroserve.cli import worker as cli
    from workers.config import WorkerConfig

    parser = argparse.ArgumentParser(prog="heteroserve worker")
    cli.configure(parser)
    monkeypatch.setenv(cli.DEFAULT_TOKEN_ENV, TOKEN)
    base = ["--model", str(tiny_model_dir), "--port", "0"]
    assert cli.build_config(parser.parse_args([*base, "--session-port", "off"])).session_port is None
    assert cli.build_config(parser.parse_args([*base, "--session-port", "50052"])).session_port == 50052
    assert cli.build_config(parser.parse_args(base)).session_port == 0
    with pytest.raises(ConfigError) as info:
        cli.build_config(parser.parse_args([*base, "--session-port", "70000"]))
    assert info.value.field == "--session-port" and "0..65535" in str(info.value)
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--session-port", "fast"])
    with pytest.raises(ValueError, match=r"session_port must be in 0\.\.65535"):
        WorkerConfig(worker_id="w", model_dir=tiny_model_dir, cluster_token=TOKEN, session_port=-1)
