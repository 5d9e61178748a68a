"""The `heteroserve.v1.Worker` servicer: each RPC translates protobuf to engine calls and back.

Errors are not handled here: domain errors propagate to `ErrorInterceptor`, which maps them to
status codes in one place (a `Session` ends each failed generation with the same status, as an event:
workers/service/session.py). New work (Generate, each generation of a Session, Prefill, Decode) passes
through the `DrainGate` and is refused with UNAVAILABLE once the worker drains; PullKV and Stats keep
working. A call the client abandons aborts its engine request, so its blocks are freed at once.

Each request's prompt is hashed once (`PrefixLoader.with_block_hashes`); the hashes travel on the
`EngineRequest` to the KV transfer, the read-through, the engine's prefix cache and Prefill's reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from grpc import aio

from cache.hashing import BlockHash
from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from workerrpc.frames import SESSION_PORT_KEY
from workers.kv.wire import encode_block
from workers.service import convert
from workers.service.drain import DrainGate
from workers.service.session import SessionHandler
from workers.service.session_port import SessionPort

if TYPE_CHECKING:
    from workers.config import WorkerConfig
    from workers.engine.types import EngineRequest
    from workers.kv.cache_link import WorkerKVCache
    from workers.kv.loader import PrefixLoader
    from workers.metrics import WorkerMetrics
    from workers.service.engine_api import WorkerEngine

log = logging.getLogger(__name__)


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    """Serves one engine. `loader` hashes each prompt and loads its cached prefix (P/D transfer,
    read-through); `kv_cache` (optional) publishes on Prefill. `on_drain` is awaited once when a drain
    starts."""

    def __init__(self, engine: WorkerEngine, config: WorkerConfig, metrics: WorkerMetrics,
                 loader: PrefixLoader, gate: DrainGate, *, kv_cache: WorkerKVCache | None = None,
                 on_drain: Callable[[], Awaitable[None]] | None = None) -> None:
        self._engine = engine
        self._config = config
        self._metrics = metrics
        self._loader = loader
        self._gate = gate
        self._kv_cache = kv_cache
        self._on_drain = on_drain
        self._sessions: set[SessionHandler] = set()
        self.session_port: SessionPort | None = None  # set by WorkerServer when it binds one
        self._limits = convert.ModelLimits(engine.max_context_tokens, engine.tokenizer.get_vocab_size())

    async def Generate(self, request: worker_pb2.GenerateRequest,
                       context: aio.ServicerContext) -> AsyncIterator[common_pb2.TokenChunk]:
        async for chunk in self._generate(request):
            yield chunk

    async def Session(self, request_iterator: AsyncIterator[worker_pb2.SessionRequest],
                      context: aio.ServicerContext) -> AsyncIterator[worker_pb2.SessionEvents]:
        # at once: the client writes after it (workerrpc/session.py); it names the plain session port
        # when there is one (workers/service/session_port.py)
        port = self.session_port.port if self.session_port is not None else 0
        await context.send_initial_metadata(((SESSION_PORT_KEY, str(port)),) if port else ())
        handler = self.new_session_handler()
        self._sessions.add(handler)
        try:
            async for event in handler.serve(request_iterator):
                yield event
        finally:
            self._sessions.discard(handler)

    def new_session_handler(self) -> SessionHandler:
        """A handler of one session (gRPC `Session` or a connection of the plain session port)."""
        return SessionHandler(self._generate, self._metrics.record_request)

    def close_sessions(self) -> None:
        """End every open `Session` (the server is stopping; a session would otherwise hold it open)."""
        for handler in list(self._sessions):
            handler.close()

    async def Prefill(self, request: worker_pb2.PrefillRequest,
                      context: aio.ServicerContext) -> worker_pb2.PrefillResponse:
        with self._gate.admit():
            full = self._loader.with_block_hashes(convert.engine_request(
                request.request_id, request.prompt_token_ids, request.sampling, request.cache_keys,
                self._limits))
            one_token = dataclasses.replace(full, sampling=dataclasses.replace(full.sampling, max_tokens=1))
            await self._loader.load(full)
            first = convert.merge_chunks(await self._collect(one_token))
            if first.finish_reason == "length" and full.sampling.max_tokens > 1:
                first.finish_reason = ""  # only the prefill's own limit was reached, not the request's
            hashes = full.block_hashes
            held = hashes[: self._engine.match_prefix(hashes)]
            if request.publish_to_shared_tier and self._kv_cache is not None:
                await self._kv_cache.publish(held)
            return worker_pb2.PrefillResponse(first=first, block_hashes=held,
                                              worker_id=self._config.worker_id)

    async def Decode(self, request: worker_pb2.DecodeRequest,
                     context: aio.ServicerContext) -> AsyncIterator[common_pb2.TokenChunk]:
        with self._gate.admit():
            done = len(request.generated_token_ids)
            if done and done == request.sampling.max_tokens:
                # Nothing left to generate (e.g. a migration after the last token): just finish.
                yield common_pb2.TokenChunk(request_id=request.request_id, finish_reason="length",
                                            prompt_tokens=len(request.prompt_token_ids),
                                            worker_id=self._config.worker_id)
                return
            engine_request = self._loader.with_block_hashes(convert.engine_request(
                request.request_id, request.prompt_token_ids, request.sampling, request.cache_keys,
                self._limits, priority=request.priority, generated=request.generated_token_ids))
            await self._loader.load(engine_request,
                                    convert.kv_transfer(request.kv_source, len(request.prompt_token_ids)))
            async for chunk in self._stream(engine_request):
                yield chunk

    async def PullKV(self, request: worker_pb2.PullKVRequest,
                     context: aio.ServicerContext) -> AsyncIterator[common_pb2.KVBlockData]:
        with self._gate.track():
            blocks = await self._engine.export_blocks([BlockHash(h) for h in request.block_hashes])
            model_id = self._engine.model_id
            for block in blocks:
                payload = await asyncio.to_thread(encode_block, block, model_id)
                self._metrics.kv_blocks_exported.inc()
                yield common_pb2.KVBlockData(block_hash=block.block_hash, payload=payload)

    async def Stats(self, request: worker_pb2.StatsRequest,
                    context: aio.ServicerContext) -> worker_pb2.WorkerStats:
        stats = self._engine.stats()
        cfg = self._config
        return worker_pb2.WorkerStats(
            worker_id=cfg.worker_id, role=cfg.role, device=cfg.device, node_type=cfg.node_type,
            model=self._engine.model_id, num_running=stats.num_running, num_waiting=stats.num_waiting,
            kv_blocks_total=stats.kv_blocks_total, kv_blocks_free=stats.kv_blocks_free,
            kv_blocks_cached=stats.kv_blocks_cached, block_size=stats.block_size,
            draining=self._gate.draining, prompt_tokens_total=stats.prompt_tokens_total,
            generated_tokens_total=stats.generated_tokens_total,
            cached_tokens_total=stats.cached_tokens_total)

    async def Drain(self, request: worker_pb2.DrainRequest,
                    context: aio.ServicerContext) -> worker_pb2.DrainResponse:
        await self.start_draining()
        timeout = request.timeout_seconds if request.timeout_seconds > 0 else self._config.drain_grace_seconds
        remaining = await self._gate.wait_idle(timeout)
        return worker_pb2.DrainResponse(drained=remaining == 0, remaining=remaining)

    async def start_draining(self) -> None:
        """Refuse new work from now on; runs `on_drain` the first time. Idempotent."""
        if self._gate.draining:
            return
        self._gate.start_draining()
        self._metrics.draining.set(1)
        log.info("draining: refusing new work, %d calls in flight", self._gate.in_flight)
        if self._on_drain is not None:
            await self._on_drain()

    async def _generate(self, request: worker_pb2.GenerateRequest) -> AsyncIterator[common_pb2.TokenChunk]:
        """One generation, as `Generate` and each generation of a `Session` run it."""
        with self._gate.admit():
            engine_request = self._loader.with_block_hashes(convert.engine_request(
                request.request_id, request.prompt_token_ids, request.sampling, request.cache_keys,
                self._limits, priority=request.priority))
            await self._loader.load(engine_request)
            async for chunk in self._stream(engine_request):
                yield chunk

    async def _stream(self, request: EngineRequest) -> AsyncGenerator[common_pb2.TokenChunk, None]:
        """The engine's events for `request` as chunks. A consumer that stops early (client cancel)
        closes the engine's stream, which aborts the request and frees its blocks."""
        first = True
        async for event in self._engine.generate(request):
            yield convert.token_chunk(event, self._config.worker_id, first=first)
            first = False

    async def _collect(self, request: EngineRequest) -> list[common_pb2.TokenChunk]:
        """All of `request`'s chunks. A cancelled call closes the engine's stream at once (aborting the
        request), as a client that abandons a stream does."""
        async with contextlib.aclosing(self._stream(request)) as chunks:
            return [chunk async for chunk in chunks]
