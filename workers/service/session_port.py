"""The worker's plain session port: the gRPC `Session` protocol over length-prefixed frames on TCP.

What and why (the client's side: workerrpc/stream_session.py): the gateway's hop to a worker over gRPC
aio costs ~1 ms more than the socket itself, so a worker serving plaintext also listens here and names
the port in its gRPC `Session` call's initial metadata. Each connection starts with the cluster token
(`HELLO` + token; a wrong token is answered with a refusal frame and closed) and then carries the same
`SessionRequest` messages in and `SessionEvents` out, run by the same `SessionHandler` as a gRPC
`Session`: the drain gate, validation, the read-through, the metrics and the error events are shared.

The only difference is the end of the stream. A TCP connection has no half-close: when it closes, the
caller went away, so every generation still running on it is aborted (as a cancelled gRPC `Session`),
which frees its KV blocks. `close()` (the worker stopping) ends every connection the same way. Only
bound without TLS (workers/service/server.py): mutual TLS clusters keep gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import cast

from google.protobuf.message import DecodeError

from common.errors import UnavailableError
from heteroserve.v1 import worker_pb2
from workerrpc.frames import ACCEPTED, HELLO, MAX_FRAME_BYTES, MAX_HELLO_BYTES, FrameError, FrameReader, frame
from workers.service.session import SessionHandler

log = logging.getLogger(__name__)

REFUSED = b"refused: missing or invalid cluster token"


class SessionPort:
    """Serves sessions, each run by a handler from `new_handler` (the servicer's), on `host` and the
    given port (0: chosen by the system)."""

    def __init__(self, new_handler: Callable[[], SessionHandler], cluster_token: str) -> None:
        self.new_handler = new_handler
        self._hello = HELLO + cluster_token.encode()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.port = 0

    async def start(self, host: str, port: int = 0) -> int:
        """Listen; returns the bound port. Raises `UnavailableError` when `port` cannot be bound."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _Connection(self), host, port)
        except OSError as exc:
            raise UnavailableError(f"cannot serve the session port on {host}:{port}: {exc}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop listening and end every connection, aborting the generations running on them."""
        if self._server is not None:
            self._server.close()
            self._server = None
        pumps = [c.close() for c in list(self._connections)]
        await asyncio.gather(*(p for p in pumps if p is not None), return_exceptions=True)

    def accepts(self, hello: bytes) -> bool:
        return hmac.compare_digest(hello, self._hello)


class _Connection(asyncio.Protocol):
    """One client connection: the handshake, then requests fed to a `SessionHandler` whose events are
    written back as they come."""

    def __init__(self, port: SessionPort) -> None:
        self._port = port
        self._reader = FrameReader(MAX_HELLO_BYTES)
        self._transport: asyncio.Transport | None = None
        self._requests: asyncio.Queue[worker_pb2.SessionRequest | None] = asyncio.Queue()
        self._handler: SessionHandler | None = None
        self._pump: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        self._port._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except FrameError as exc:
            log.warning("session port: closing a connection that sent a bad frame: %s", exc)
            self._abort()
            return
        for payload in frames:
            if self._handler is None:
                self._handshake(payload)
                if self._handler is None:
                    return
                self._reader.max_bytes = MAX_FRAME_BYTES
                continue
            try:
                message = worker_pb2.SessionRequest.FromString(payload)
            except DecodeError:
                log.warning("session port: closing a connection that sent a malformed SessionRequest")
                self._abort()
                return
            self._requests.put_nowait(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._port._connections.discard(self)
        self._requests.put_nowait(None)
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def close(self) -> asyncio.Task[None] | None:
        """End this connection (the worker is stopping); returns its pump to wait for."""
        if self._handler is not None:
            self._handler.close()
        self._abort()
        return self._pump

    def _handshake(self, hello: bytes) -> None:
        assert self._transport is not None
        if not self._port.accepts(hello):
            log.warning("session port: refused a connection without the cluster token")
            self._transport.write(frame(REFUSED))
            self._abort()
            return
        self._transport.write(frame(ACCEPTED))
        self._handler = self._port.new_handler()
        self._pump = asyncio.get_running_loop().create_task(self._serve(self._handler))

    async def _serve(self, handler: SessionHandler) -> None:
        try:
            async for events in handler.serve(self._incoming()):
                await self._writable.wait()
                if self._transport is None or self._transport.is_closing():
                    break
                self._transport.write(frame(events.SerializeToString()))
        finally:
            self._abort()

    async def _incoming(self) -> AsyncIterator[worker_pb2.SessionRequest]:
        """The requests in arrival order; the end of the connection ends the session as a cancellation
        (raising makes the handler abort the generations still running)."""
        while True:
            message = await self._requests.get()
            if message is None:
                raise ConnectionResetError("the session connection closed")
            yield message

    def _abort(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self._transport.close()
