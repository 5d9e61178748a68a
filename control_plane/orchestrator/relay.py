"""Relay one worker stream to the client, with timeouts, never repeating a token.

`relay(run, chunks, ...)` reads `TokenChunk`s from one worker call, appends their tokens to
`run.generated` and yields `TokenDelta`s, then one `Finished`. Timeouts: the first chunk of the call
must come within `first_timeout` seconds, each later one within `token_timeout`. A timeout raises
`DeadlineExceededError`; a stream that ends without a finish reason raises `UnavailableError` (the
worker went away); both are retryable, so the orchestrator retries or migrates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cache.hashing import BlockHash
from common.errors import DeadlineExceededError, UnavailableError
from control_plane.orchestrator.types import Event, Finished, GenerateJob, RouteInfo, TokenDelta
from heteroserve.v1 import common_pb2


@dataclass
class Run:
    """The mutable state of one generation across attempts (owned by the orchestrator)."""

    job: GenerateJob
    request_class: str = "default"
    block_hashes: tuple[BlockHash, ...] = ()  # the prompt's, recorded against each worker it is routed to
    generated: list[int] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    retries: int = 0
    migrations: int = 0
    pool: str = ""
    worker_id: str = ""
    prefill_worker_id: str = ""
    disaggregated: bool = False
    cached_prompt_tokens: int | None = None
    policy: str = ""
    reason: str = ""

    def route(self) -> RouteInfo:
        return RouteInfo(request_class=self.request_class, pool=self.pool, worker_id=self.worker_id,
                         prefill_worker_id=self.prefill_worker_id, disaggregated=self.disaggregated,
                         cached_prompt_tokens=self.cached_prompt_tokens or 0, retries=self.retries,
                         migrations=self.migrations, policy=self.policy, reason=self.reason)

    def finished(self, reason: str) -> Finished:
        return Finished(finish_reason=reason, prompt_tokens=len(self.job.prompt_token_ids),
                        completion_tokens=len(self.generated), route=self.route())


def accept_chunk(run: Run, chunk: common_pb2.TokenChunk) -> list[Event]:
    """The events one chunk gives the client; records its tokens in `run`."""
    if run.cached_prompt_tokens is None and chunk.prompt_tokens:
        run.cached_prompt_tokens = chunk.cached_prompt_tokens
    events: list[Event] = []
    if chunk.token_ids or chunk.text:
        run.generated.extend(chunk.token_ids)
        events.append(TokenDelta(tuple(chunk.token_ids), chunk.text, tuple(chunk.logprobs),
                                 final=bool(chunk.finish_reason)))
    if chunk.finish_reason:
        events.append(run.finished(chunk.finish_reason))
    return events


async def relay(run: Run, chunks: AsyncIterator[common_pb2.TokenChunk], *, first_timeout: float,
                token_timeout: float, worker_id: str) -> AsyncIterator[Event]:
    """Yield the events of one worker call until its finish (see module docstring)."""
    timeout = first_timeout
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        while True:
            try:
                async with asyncio.timeout(timeout):  # no task per token, unlike wait_for
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                raise UnavailableError(f"worker {worker_id} ended the stream without finishing") from None
            except TimeoutError:
                raise DeadlineExceededError(
                    f"worker {worker_id} sent no token within {timeout:.1f}s") from None
            timeout = token_timeout
            for event in accept_chunk(run, chunk):
                yield event
                if isinstance(event, Finished):
                    return
