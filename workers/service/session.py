"""The worker's side of `Session`: many generations multiplexed over one long-lived gRPC stream.

Why it exists: a per-call `Generate` costs both ends a new HTTP/2 stream, its metadata and auth, and a
status at the end, each a trip through gRPC's completion queue and the event loop. Over a session, a
generation is one message in and its chunks out; the gateway keeps one session per worker
(`workerrpc.session`). Measured in docs/benchmarks.md (bench gateway).

Protocol (worker.proto): a `SessionRequest` starts a generation (`generate`) under a caller-chosen
`tag`, or aborts one (`cancel`). Each chunk comes back as a `SessionEvent` with its tag, in order (the
events ready at once travel together in one `SessionEvents` message: one write per batch); a
generation that fails ends with a `SessionEvent.error` carrying the status name and message a per-call
`Generate` would have ended with, and the stream stays up. When the caller half-closes, the session
ends after its running generations finish; when the stream is cancelled (the caller went away) or the
worker stops (`close`), every generation still running on it is aborted, which frees its KV blocks. A
draining worker keeps its sessions open, so running generations finish, and refuses new ones with
UNAVAILABLE, one error event each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from common.errors import HeteroserveError
from heteroserve.v1 import common_pb2, worker_pb2
from workers.service.interceptors import INTERNAL_MESSAGE

log = logging.getLogger(__name__)

RunGeneration = Callable[[worker_pb2.GenerateRequest], AsyncIterator[common_pb2.TokenChunk]]
METHOD = "Session.Generate"  # the `method` label of each generation's outcome in the worker metrics


def _error(tag: int, code: str, message: str) -> worker_pb2.SessionEvent:
    return worker_pb2.SessionEvent(tag=tag, error=worker_pb2.SessionError(code=code, message=message))


class SessionHandler:
    """One `Session` call. `run` is the per-call `Generate` pipeline (drain gate, validation, cache
    read-through, engine); `record(method, status)` counts each generation's outcome."""

    def __init__(self, run: RunGeneration, record: Callable[[str, str], None]) -> None:
        self._run = run
        self._record = record
        self._out: asyncio.Queue[worker_pb2.SessionEvent | None] = asyncio.Queue()
        self._running: dict[int, asyncio.Task[None]] = {}

    async def serve(self, requests: AsyncIterator[worker_pb2.SessionRequest],
                    ) -> AsyncIterator[worker_pb2.SessionEvents]:
        """The session's events until the caller half-closes and every generation has ended, in
        batches: whatever is ready when the previous write finished goes out as one message."""
        reader = asyncio.create_task(self._read(requests))
        try:
            done = False
            while not done:
                batch: list[worker_pb2.SessionEvent] = []
                event = await self._out.get()
                while event is not None:
                    batch.append(event)
                    if self._out.empty():
                        break
                    event = self._out.get_nowait()
                done = event is None
                if batch:
                    yield worker_pb2.SessionEvents(events=batch)
        finally:
            reader.cancel()
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(reader, *self._running.values(), return_exceptions=True)

    def close(self) -> None:
        """End the session now (the worker is stopping): its running generations are aborted."""
        self._out.put_nowait(None)

    async def _read(self, requests: AsyncIterator[worker_pb2.SessionRequest]) -> None:
        try:
            async for message in requests:
                kind = message.WhichOneof("kind")
                if kind == "generate":
                    self._start(message.tag, message.generate)
                elif kind == "cancel" and message.tag in self._running:
                    self._running[message.tag].cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        finally:
            self._out.put_nowait(None)

    def _start(self, tag: int, request: worker_pb2.GenerateRequest) -> None:
        if tag in self._running:
            self._out.put_nowait(_error(tag, "INVALID_ARGUMENT",
                                        f"tag: {tag} is already running in this session"))
            return
        self._running[tag] = asyncio.create_task(self._generate(tag, request))

    async def _generate(self, tag: int, request: worker_pb2.GenerateRequest) -> None:
        status = "ok"
        try:
            async for chunk in self._run(request):
                self._out.put_nowait(worker_pb2.SessionEvent(tag=tag, chunk=chunk))
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except HeteroserveError as exc:
            status = exc.grpc_status.lower()
            log.info("session generation %s failed: %s %s", request.request_id, exc.grpc_status, exc)
            self._out.put_nowait(_error(tag, exc.grpc_status, str(exc)))
        except Exception:
            status = "internal"
            log.exception("session generation %s failed with an unexpected error", request.request_id)
            self._out.put_nowait(_error(tag, "INTERNAL", INTERNAL_MESSAGE))
        finally:
            del self._running[tag]
            self._record(METHOD, status)
