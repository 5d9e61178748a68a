"""Generations multiplexed over one long-lived `Session` stream to one worker: the gateway's hot path.

A per-call `Generate` costs both ends a new HTTP/2 stream, metadata, auth and a final status, each a
trip through gRPC's completion queue and the event loop; over a session a generation is one message
out and its chunks back (the worker's side and the measurements: workers/service/session.py).

`WorkerSession.generate(request)` yields a generation's chunks and raises the same domain errors as
`WorkerClient.generate`. The stream opens on first use and reopens after it breaks; when it breaks,
every generation on it fails with the error it broke with (`UnavailableError` when the worker went
away: retryable, so the orchestrator retries or migrates). A generation whose caller stops reading
(client gone, timeout) is cancelled on the worker. gRPC allows one write at a time on a stream, so
writes take a lock. Chunks wait in a per-generation queue, so one slow reader never holds up the
others on the same stream.

A worker older than `Session` (mid rolling upgrade) answers UNIMPLEMENTED: `SessionUnsupported` is
raised before any chunk, `unsupported` turns true, and `WorkerClient` uses per-call `Generate` for it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc import aio

from common.errors import UnavailableError, error_from_grpc_status, error_from_rpc_error
from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from workerrpc.frames import SESSION_PORT_KEY


class SessionUnsupported(Exception):
    """The worker does not serve `Session` (UNIMPLEMENTED)."""


ErrorFactory = Callable[[], Exception]  # a fresh exception for each waiting generation


@dataclass
class _Stream:
    """One open `Session` call and the generations waiting on it."""

    call: aio.StreamStreamCall
    pending: dict[int, asyncio.Queue[common_pb2.TokenChunk | Exception]] = field(default_factory=dict)
    broken: ErrorFactory | None = None
    reader: asyncio.Task[None] | None = None
    accepted: bool = False  # the worker sent its initial metadata: the call was not refused


class WorkerSession:
    def __init__(self, stub: worker_pb2_grpc.WorkerStub, metadata: Sequence[tuple[str, str]],
                 address: str) -> None:
        self._stub = stub
        self._metadata = tuple(metadata)
        self._address = address
        self._stream: _Stream | None = None
        self._tags = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()  # writes in flight (generations and cancels)
        self.unsupported = False
        self.stream_port: int | None = None  # the worker's plain session port (workerrpc.stream_session)

    async def generate(self, request: worker_pb2.GenerateRequest,
                       ) -> AsyncGenerator[common_pb2.TokenChunk, None]:
        """The chunks of one generation; the last has `finish_reason` set."""
        stream = self._open()
        tag = next(self._tags)
        queue: asyncio.Queue[common_pb2.TokenChunk | Exception] = asyncio.Queue()
        stream.pending[tag] = queue  # before any await: a break from now on reaches this queue
        finished = False
        try:
            self._write_soon(stream, worker_pb2.SessionRequest(tag=tag, generate=request))
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                finished = bool(item.finish_reason)
                yield item
                if finished:
                    return
        finally:
            del stream.pending[tag]
            if not finished and stream.broken is None:
                self._cancel_later(stream, tag)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()
            if stream.reader is not None:
                await asyncio.gather(stream.reader, return_exceptions=True)
        for task in list(self._writes):
            task.cancel()

    def _open(self) -> _Stream:
        if self._stream is None or self._stream.broken is not None:
            stream = _Stream(self._stub.Session(metadata=self._metadata))
            stream.reader = asyncio.create_task(self._read(stream))
            self._stream = stream
        return self._stream

    async def _read(self, stream: _Stream) -> None:
        """Hand each event to its generation; when the stream ends, fail every one still waiting."""
        address = self._address
        broken: ErrorFactory = lambda: UnavailableError(f"worker {address} ended the session")  # noqa: E731
        try:
            async for message in stream.call:
                for event in message.events:
                    queue = stream.pending.get(event.tag)
                    if queue is None:
                        continue  # a generation its caller abandoned
                    if event.WhichOneof("kind") == "error":
                        queue.put_nowait(error_from_grpc_status(event.error.code, event.error.message))
                    else:
                        queue.put_nowait(event.chunk)
        except grpc.RpcError as exc:
            broken = self._broken_by(exc)
        except asyncio.CancelledError:
            broken = lambda: UnavailableError(f"the session to worker {address} was closed")  # noqa: E731
            raise
        finally:
            stream.broken = broken
            for queue in stream.pending.values():
                queue.put_nowait(broken())

    def _broken_by(self, exc: grpc.RpcError) -> ErrorFactory:
        """What the generations of a stream that ended with `exc` fail with. A refusal of the call itself
        keeps its status (no Session: fall back; bad token: not retryable). Anything else is the
        transport breaking, which says nothing about the generations: UNAVAILABLE, so they are retried
        or migrated. (gRPC also reports a write that raced the end of the call as INTERNAL.)"""
        code = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            self.unsupported = True
            return lambda: SessionUnsupported(f"worker {self._address} does not serve Session")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return lambda: error_from_rpc_error(exc)
        message = f"the session to worker {self._address} broke: {code.name} {exc.details() or ''}".rstrip()
        return lambda: UnavailableError(message)

    async def _write(self, stream: _Stream, message: worker_pb2.SessionRequest) -> None:
        """Send `message`; a failed write means a broken stream, which the reader reports. The first
        write waits for the worker's initial metadata (sent as the call starts), so a refused call has
        ended before anything is written: a write racing the refusal would hide its status."""
        try:
            async with self._write_lock:
                if not stream.accepted:
                    self._advertised(await stream.call.initial_metadata())
                    stream.accepted = True
                await stream.call.write(message)
        except (grpc.RpcError, aio.UsageError, asyncio.InvalidStateError):
            pass

    def _advertised(self, metadata: aio.Metadata | None) -> None:
        """Note the plain session port the worker names in the call's initial metadata (None: none)."""
        port = None
        for key, value in metadata or ():
            if key == SESSION_PORT_KEY:
                text = value.decode() if isinstance(value, bytes) else value
                port = int(text) if text.isdigit() else None
        self.stream_port = port

    def _write_soon(self, stream: _Stream, message: worker_pb2.SessionRequest) -> None:
        """`_write` from a task of its own, so the caller goes on to wait for chunks at once. Waiting for
        the write instead waited for gRPC to report it sent, which came after the worker's first chunk
        in 1 request in 4 (bench gateway: p50 0.42 ms, p80 3.2 ms; the chunk then sat in the queue).
        Tasks take the write lock in the order they were made, so messages keep their order; a failed
        write is reported by the reader, as before."""
        task = asyncio.get_running_loop().create_task(self._write(stream, message))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _cancel_later(self, stream: _Stream, tag: int) -> None:
        """Tell the worker to abort `tag` (from a task: the caller may be unwinding a cancellation).
        Without a running loop (a generator finalized at shutdown) the session is going away anyway."""
        try:
            self._write_soon(stream, worker_pb2.SessionRequest(tag=tag, cancel=True))
        except RuntimeError:
            return

