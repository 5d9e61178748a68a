"""The worker holds its port from start-up (`reserved_port`): no other socket can take it while the engine
loads, and the worker's own gRPC server still binds it."""

from __future__ import annotations

import asyncio
import socket

import pytest
from grpc import aio

from common.errors import UnavailableError
from common.localredis import free_port
from workers.service.transport import reserved_port


def test_a_reserved_port_refuses_others_and_takes_grpc() -> None:
    port = free_port()

    async def serve_on_it() -> int:
        server = aio.server()
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.wait_for(channel.channel_ready(), 10)
        await channel.close()
        await server.stop(None)
        return bound

    with reserved_port("127.0.0.1", port):
        other = socket.socket()
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # what a vLLM ZMQ socket would have tried
        other.close()
        assert asyncio.run(serve_on_it()) == port


def test_a_taken_port_is_refused_naming_it() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        with (pytest.raises(UnavailableError, match=f"cannot listen on 127.0.0.1:{port}"),
              reserved_port("127.0.0.1", port)):
            pass
    finally:
        holder.close()


def test_port_zero_needs_no_reservation() -> None:
    with reserved_port("127.0.0.1", 0):
        pass
