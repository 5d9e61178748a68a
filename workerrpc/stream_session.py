"""The gateway's fast path to a worker: the `Session` messages over one plain TCP connection.

Why: one Python gRPC aio round trip costs ~1.2-1.4 ms on this project's machine against ~0.25 ms for a
raw asyncio socket (docs/benchmarks.md, bench gateway), and the gateway adds one hop to every request.
The same protobuf `SessionRequest` / `SessionEvents` messages travel here as length-prefixed frames
(`workerrpc.frames`), written straight to the socket (no write lock, no completion queue), and every
frame the worker sends is handed to its generation's queue in the loop turn it arrives. The worker runs
them through the very `SessionHandler` its gRPC `Session` uses (workers/service/session_port.py).

Precedents: vLLM v1 (API server <-> engine core) and SGLang (tokenizer manager <-> scheduler) use
ZeroMQ, Dynamo streams responses over raw TCP. Not ZeroMQ here: a DEALER socket reconnects silently and
never tells its user that the peer died, so a killed worker would leave generations waiting until a
timeout unless heartbeats were added on top; on a TCP connection the kernel closes it when the worker's
process dies, and every generation on it fails at once with a retryable `UnavailableError`, exactly as
on a broken gRPC session, so the orchestrator retries or migrates it.

Discovery and security: a worker serving plaintext gRPC binds the port and names it in the initial
metadata of every gRPC `Session` call (`SESSION_PORT_KEY`), so a client learns it over an authenticated
call and only from a worker that serves `Session` (its role allows it). The connection opens with the
cluster token (`HELLO`) and the worker answers `ACCEPTED` or closes it. The port is plaintext, so it is
never bound or used when mutual TLS is configured on either side: such clusters keep gRPC.

`StreamSession.generate` raises `StreamUnavailable` when it cannot open the connection, before anything
was sent: the caller (`WorkerClient.session_generate`) then uses the gRPC session. After the request
was sent, failures are the gRPC session's: the worker's error events as domain errors, a broken
connection as `UnavailableError`. A generation whose caller stops reading is cancelled on the worker.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncGenerator
from typing import cast

from google.protobuf.message import DecodeError

from common.errors import UnavailableError, error_from_grpc_status
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.frames import ACCEPTED, HELLO, FrameError, FrameReader, frame

CONNECT_TIMEOUT_SECONDS = 2.0
# TCP keepalive as the gateway's gRPC channels ping (control_plane/orchestrator/cluster.py): probes after
# 10 s idle, every 5 s, the connection dropped after 2 unanswered; a worker host that vanished (no FIN,
# no RST) then fails its generations as UNAVAILABLE instead of after TCP's default two hours
KEEPALIVE = ((socket.TCP_KEEPIDLE, 10), (socket.TCP_KEEPINTVL, 5), (socket.TCP_KEEPCNT, 2)) \
    if hasattr(socket, "TCP_KEEPIDLE") else ()

Item = common_pb2.TokenChunk | Exception


class StreamUnavailable(Exception):
    """The session port could not be reached or refused the handshake; nothing was sent."""


class _Connection(asyncio.Protocol):
    """One connection: the handshake, then events dispatched to the generations waiting on them."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Queue[Item]] = {}
        self.accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.broken: str | None = None
        self._reader = FrameReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except FrameError as exc:
            self._fail(f"the session port of worker {self.address} sent a bad frame: {exc}")
            return
        for payload in frames:
            if not self.accepted.done():
                self.accepted.set_result(payload == ACCEPTED)
                continue
            try:
                events = worker_pb2.SessionEvents.FromString(payload).events
            except DecodeError:
                self._fail(f"the session port of worker {self.address} sent a malformed message")
                return
            for event in events:
                queue = self.pending.get(event.tag)
                if queue is None:
                    continue  # a generation its caller abandoned
                if event.WhichOneof("kind") == "error":
                    queue.put_nowait(error_from_grpc_status(event.error.code, event.error.message))
                else:
                    queue.put_nowait(event.chunk)

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._fail(f"the session connection to worker {self.address} broke{detail}")

    def send(self, message: worker_pb2.SessionRequest) -> None:
        self.send_raw(frame(message.SerializeToString()))

    def send_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, message: str) -> None:
        if self.broken is not None:
            return
        self.broken = message
        if not self.accepted.done():
            self.accepted.set_result(False)
        for queue in self.pending.values():
            queue.put_nowait(UnavailableError(message))
        self.close()


class StreamSession:
    """Generations to the worker whose session port is `host:port`, over one connection opened on first
    use and again after it breaks. `address` names the worker in errors."""

    def __init__(self, host: str, port: int, token: str, address: str) -> None:
        self.host = host
        self.port = port
        self._hello = HELLO + token.encode()
        self._address = address
        self._conn: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._tags = itertools.count(1)

    async def generate(self, request: worker_pb2.GenerateRequest,
                       ) -> AsyncGenerator[common_pb2.TokenChunk, None]:
        """The chunks of one generation; the last has `finish_reason` set."""
        conn = await self._open()
        tag = next(self._tags)
        queue: asyncio.Queue[Item] = asyncio.Queue()
        conn.pending[tag] = queue
        finished = False
        try:
            conn.send(worker_pb2.SessionRequest(tag=tag, generate=request))
            if conn.broken is not None:  # broke between the open and the send: nothing reached it
                raise UnavailableError(conn.broken)
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                finished = bool(item.finish_reason)
                yield item
                if finished:
                    return
        finally:
            del conn.pending[tag]
            if not finished and conn.broken is None:
                conn.send(worker_pb2.SessionRequest(tag=tag, cancel=True))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _open(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.broken is None:
            return conn
        async with self._connecting:
            if self._conn is not None and self._conn.broken is None:
                return self._conn
            self._conn = await self._connect()
            return self._conn

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                transport, conn = await loop.create_connection(lambda: _Connection(self._address),
                                                               self.host, self.port)
                _keepalive(transport.get_extra_info("socket"))
                conn.send_raw(frame(self._hello))
                accepted = await conn.accepted
        except (OSError, TimeoutError) as exc:
            raise StreamUnavailable(f"session port {self.host}:{self.port} of worker {self._address}: "
                                    f"{exc!r}") from None
        if not accepted:
            conn.close()
            raise StreamUnavailable(f"session port {self.host}:{self.port} of worker {self._address} "
                                    "refused the connection")
        return conn


def _keepalive(sock: socket.socket | None) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in KEEPALIVE:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
