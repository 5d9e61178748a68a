"""`AsyncEngine`: the engine behind an asyncio interface, driven by one engine-loop thread.

The thread owns the `LLMEngine` (nothing else touches it). Callers submit commands (add, abort, export,
import) to an inbox and await a `concurrent.futures.Future`; the thread drains the inbox between steps,
runs steps while there is work, and sleeps on a condition variable otherwise. Token events of a step are
handed to the event loop in one `call_soon_threadsafe` callback and routed to per-request queues.
`stop()` aborts what runs and joins the thread. A failing step fails every request in flight with
`UnavailableError` and the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from cache.hashing import BlockHash, HashKeys
from common.errors import InvalidRequestError, UnavailableError
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine
from workers.engine.listeners import BlockListener
from workers.engine.types import EngineRequest, EngineStats, KVBlock, TokenEvent

T = TypeVar("T")
log = logging.getLogger(__name__)
_Command = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class AsyncEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.config = engine.config
        self.tokenizer = engine.tokenizer
        self.model_id = engine.model_id
        self.max_context_tokens = engine.max_context_tokens
        self.block_size = engine.config.block_size
        self.max_num_seqs = engine.config.max_num_seqs
        self.eos_token_id = engine.eos_token_ids[0] if engine.eos_token_ids else -1
        self._inbox: list[_Command] = []
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, asyncio.Queue[TokenEvent | Exception]] = {}

    @classmethod
    def from_config(cls, config: EngineConfig) -> AsyncEngine:
        return cls(LLMEngine(config))

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the engine-loop thread (once)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.model_id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Abort every request (each gets a final "abort" event) and join the thread."""
        if self._thread is None:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # ---- requests ---------------------------------------------------------------------------
    async def generate(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:
        """Stream the request's token events; the last has `finish_reason`. Raises InvalidRequestError
        (from the first iteration) for a request that can never run. Leaving early aborts it."""
        if request.request_id in self._queues:
            raise InvalidRequestError(f"request {request.request_id!r} is already running",
                                      field="request_id")
        queue: asyncio.Queue[TokenEvent | Exception] = asyncio.Queue()
        self._queues[request.request_id] = queue
        finished = True  # until the engine has accepted it there is nothing to abort
        try:
            await self._call(lambda: self.engine.add_request(request))
            finished = False
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    finished = True
                    raise item
                finished = item.finish_reason is not None
                yield item
                if finished:
                    return
        finally:
            if self._queues.get(request.request_id) is queue:
                del self._queues[request.request_id]
            if not finished and self._thread is not None:
                self._submit(lambda: self.engine.abort_request(request.request_id))

    async def abort(self, request_id: str) -> None:
        """Abort a request; its stream ends with a final "abort" event. Unknown ids are ignored."""
        event = await self._call(lambda: self.engine.abort_request(request_id))
        if event is not None:
            self._deliver([event])

    def stats(self) -> EngineStats:
        return self.engine.stats()

    # ---- KV blocks --------------------------------------------------------------------------
    def hash_keys(self, adapter: str = "", tenant_salt: str = "") -> HashKeys:
        return self.engine.hash_keys(adapter, tenant_salt)

    def match_prefix(self, hashes: Sequence[BlockHash]) -> int:
        """Leading `hashes` cached in the pool now (a hint: it may change before the request runs)."""
        return self.engine.match_prefix(hashes)

    async def export_blocks(self, hashes: Sequence[BlockHash]) -> list[KVBlock]:
        return await self._call(lambda: self.engine.export_blocks(hashes))

    async def import_blocks(self, blocks: Sequence[KVBlock]) -> int:
        return await self._call(lambda: self.engine.import_blocks(blocks))

    def add_block_listener(self, listener: BlockListener) -> None:
        self.engine.add_block_listener(listener)

    # ---- the engine thread ------------------------------------------------------------------
    def _submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cv:
            self._inbox.append((fn, future))
            self._cv.notify()
        return future

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            raise UnavailableError("engine is not running (call start())")
        return await asyncio.wrap_future(self._submit(fn))

    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._inbox or self._stopping or self.engine.has_unfinished()):
                    self._cv.wait()
                commands, self._inbox = self._inbox, []
                stopping = self._stopping
            for fn, future in commands:
                # A caller that gave up (its task was cancelled, so `wrap_future` cancelled this future)
                # gets nothing run; setting a result on a cancelled future would kill this thread.
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    result = fn()
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            if stopping:
                self._abort_all()
                return
            if self.engine.has_unfinished():
                self._step()

    def _step(self) -> None:
        try:
            events = self.engine.step()
        except Exception as exc:
            log.exception("engine step failed; failing the requests in flight")
            error = UnavailableError(f"engine step failed: {exc}")
            for request_id in list(self.engine.requests):
                self.engine.abort_request(request_id)
                self._post([(request_id, error)])
            return
        if events:
            self._post([(e.request_id, e) for e in events])

    def _abort_all(self) -> None:
        events = [self.engine.abort_request(rid) for rid in list(self.engine.requests)]
        self._post([(e.request_id, e) for e in events if e is not None])

    def _post(self, items: list[tuple[str, TokenEvent | Exception]]) -> None:
        assert self._loop is not None, "engine thread running without an event loop"
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._route, items)

    def _deliver(self, events: list[TokenEvent]) -> None:
        self._route([(e.request_id, e) for e in events])

    def _route(self, items: list[tuple[str, TokenEvent | Exception]]) -> None:
        for request_id, item in items:
            queue = self._queues.get(request_id)
            if queue is not None:
                queue.put_nowait(item)
