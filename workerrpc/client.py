"""An async client of one worker's gRPC `Worker` service, for the gateway, other workers and tests.

Shared vocabulary (no torch, no engine): it speaks the protobuf messages of `heteroserve.v1`, adds the
cluster token to every call, and turns gRPC errors back into the domain errors of
`common.errors` (`error_from_grpc_status`), so callers handle `InvalidRequestError`,
`UnavailableError` (retryable: try another worker), `AuthenticationError`, ... and never
`grpc.RpcError`. A client owns one channel; close it with `close()` or `async with`.

With `tls` (a `common.tls.ClientTLS`) the channel is mutual TLS: this process's certificate goes to the
worker, and the worker's certificate must chain to the cluster CA and name `WORKER_SERVER_NAME`; a worker
that fails that check is unreachable (`UnavailableError`). Without it the channel is plaintext (dev).
The credentials are read when the client is built, so a client built after a rotation uses the new files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import error_from_rpc_error as domain_error
from common.tls import ClientTLS
from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from workerrpc.session import SessionUnsupported, WorkerSession
from workerrpc.stream_session import StreamSession, StreamUnavailable

WORKER_SERVICE = "heteroserve.v1.Worker"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # both ends of a worker channel: KV blocks of big models are MBs
# use a worker's plain session port when it names one (docs/architecture.md); the environment variable
# turns it off for every client of a process (the gateway builds its clients in the orchestrator's view)
SESSION_PORT_DEFAULT = os.environ.get("HETEROSERVE_WORKER_SESSION_PORT", "1") != "0"


def _host(address: str) -> str:
    """The host of `host:port` (brackets of an IPv6 literal removed)."""
    return address.rsplit(":", 1)[0].strip("[]")


class WorkerClient:
    """Calls to the worker at `address` (`host:port`). `timeout_seconds` bounds unary calls; streams
    are bounded by `stream_timeout_seconds` (None = no deadline)."""

    def __init__(self, address: str, cluster_token: str, *, timeout_seconds: float = 30.0,
                 stream_timeout_seconds: float | None = None,
                 channel_options: Sequence[tuple[str, int | str]] = (), tls: ClientTLS | None = None,
                 session_port: bool = SESSION_PORT_DEFAULT) -> None:
        """`session_port`: let `session_generate` use the worker's plain session port when it advertises
        one (never with `tls`: that port is plaintext)."""
        self.address = address
        self._token = cluster_token
        self._use_port = session_port and tls is None
        self._fast: StreamSession | None = None
        self._metadata = (("authorization", f"Bearer {cluster_token}"),) if cluster_token else ()
        self._timeout = timeout_seconds
        self._stream_timeout = stream_timeout_seconds
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *channel_options]
        if tls is None:
            self._channel = aio.insecure_channel(address, options=options)
        else:
            self._channel = aio.secure_channel(address, tls.credentials(), options=[*options, *tls.options()])
        self._stub = worker_pb2_grpc.WorkerStub(self._channel)
        self._session = WorkerSession(self._stub, self._metadata, address)

    async def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        await self._session.close()
        await self._channel.close()

    async def __aenter__(self) -> WorkerClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def generate(self, request: worker_pb2.GenerateRequest) -> AsyncIterator[common_pb2.TokenChunk]:
        """Stream the request's token chunks; the last has `finish_reason` set."""
        call = self._stub.Generate(request, metadata=self._metadata, timeout=self._stream_timeout)
        async for chunk in self._stream(call):
            yield chunk

    async def session_generate(self, request: worker_pb2.GenerateRequest,
                               ) -> AsyncIterator[common_pb2.TokenChunk]:
        """As `generate`, over this client's long-lived `Session` stream (`workerrpc.session`);
        a worker without `Session` is asked by per-call `Generate` instead. Once the gRPC session learnt
        the worker's plain session port (and `session_port` allows it), generations go over that port
        (`workerrpc.stream_session`); a port that cannot be reached sends them back to gRPC."""
        fast = self._fast_session()
        if fast is not None:
            try:
                async with contextlib.aclosing(fast.generate(request)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
            except StreamUnavailable:  # raised before anything was sent
                self._session.stream_port = None  # learnt again when the gRPC session reopens
        if not self._session.unsupported:
            try:
                async with contextlib.aclosing(self._session.generate(request)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
            except SessionUnsupported:  # raised before any chunk
                pass
        async for chunk in self.generate(request):
            yield chunk

    def _fast_session(self) -> StreamSession | None:
        port = self._session.stream_port if self._use_port else None
        if port is None:
            return None
        if self._fast is None or self._fast.port != port:
            if self._fast is not None:
                self._fast.close()
            self._fast = StreamSession(_host(self.address), port, self._token, self.address)
        return self._fast

    async def decode(self, request: worker_pb2.DecodeRequest) -> AsyncIterator[common_pb2.TokenChunk]:
        """Stream the tokens after `request.generated_token_ids` (KV imported from `kv_source`)."""
        call = self._stub.Decode(request, metadata=self._metadata, timeout=self._stream_timeout)
        async for chunk in self._stream(call):
            yield chunk

    async def pull_kv(self, block_hashes: Sequence[bytes], cache_keys: common_pb2.CacheKeys | None = None,
                      timeout_seconds: float | None = None) -> AsyncIterator[common_pb2.KVBlockData]:
        """Stream the requested blocks the worker holds (possibly fewer, in request order)."""
        request = worker_pb2.PullKVRequest(block_hashes=list(block_hashes), cache_keys=cache_keys)
        call = self._stub.PullKV(request, metadata=self._metadata, timeout=timeout_seconds or self._timeout)
        async for block in self._stream(call):
            yield block

    async def prefill(self, request: worker_pb2.PrefillRequest) -> worker_pb2.PrefillResponse:
        return await self._unary(self._stub.Prefill, request)

    async def stats(self) -> worker_pb2.WorkerStats:
        return await self._unary(self._stub.Stats, worker_pb2.StatsRequest())

    async def drain(self, timeout_seconds: float = 30.0) -> worker_pb2.DrainResponse:
        """Ask the worker to stop taking work and wait (up to `timeout_seconds`) for running requests."""
        request = worker_pb2.DrainRequest(timeout_seconds=timeout_seconds)
        try:
            return await self._stub.Drain(request, metadata=self._metadata, timeout=timeout_seconds + 5.0)
        except grpc.RpcError as exc:
            raise domain_error(exc) from None

    async def health(self, service: str = WORKER_SERVICE) -> bool:
        """True when the standard health service reports SERVING (False while draining or down)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._timeout)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _unary(self, method: aio.UnaryUnaryMultiCallable, request: object) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise domain_error(exc) from None

    @staticmethod
    async def _stream(call: aio.UnaryStreamCall) -> AsyncIterator[Any]:
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            raise domain_error(exc) from None
        finally:
            call.cancel()  # no-op when finished; stops the server's work when the caller broke off
