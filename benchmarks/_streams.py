"""Concurrent greedy streams through the gateway's SDK, for `bench chaos` and `bench load`.

`run_streams(target, api_key, prompts, ...)` sends every prompt at once (one task each) over the gRPC
transport (it returns token ids), and returns one `StreamResult` per prompt, in order: token ids,
finish reason, TTFT, route, and the error when the stream failed. `on_token` is called after every
chunk, so a fault injector can wait for streams to be under way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from heteroserve.client import AsyncClient, RetryPolicy

WORDS = ("harbour", "lantern", "copper", "violet", "meadow", "silver", "orbit", "canyon", "ember", "willow",
         "quartz", "thunder", "marble", "falcon", "cedar", "glacier")


def prompt(i: int, words: int) -> str:
    """A deterministic prompt of about `words` words, distinct for each `i`."""
    return f"Request {i}: " + " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words))


@dataclass
class StreamResult:
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = ""
    ttft_seconds: float | None = None
    seconds: float = 0.0
    cached_prompt_tokens: int = 0
    migrations: int = 0
    retries: int = 0
    disaggregated: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.finish_reason)


Timed = tuple[float, StreamResult]


async def one_stream(client: AsyncClient, model: str, text: str, max_tokens: int,
                     on_token: Callable[[], None] | None = None) -> StreamResult:
    result = StreamResult()
    start = time.monotonic()
    try:
        async for chunk in client.stream(text, model=model, max_tokens=max_tokens, temperature=0.0,
                                         ignore_eos=True):
            if chunk.token_ids and result.ttft_seconds is None:
                result.ttft_seconds = time.monotonic() - start
            result.token_ids += chunk.token_ids
            if chunk.finish_reason:
                result.finish_reason = chunk.finish_reason
            if chunk.route is not None:
                result.cached_prompt_tokens = chunk.route.cached_prompt_tokens
                result.migrations, result.retries = chunk.route.migrations, chunk.route.retries
                result.disaggregated = chunk.route.disaggregated
            if on_token is not None:
                on_token()
    except Exception as exc:  # a lost request is a result here, not a crash of the benchmark
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    result.seconds = time.monotonic() - start
    return result


async def run_streams(target: str, api_key: str, model: str, prompts: Sequence[str], max_tokens: int,
                      on_token: Callable[[], None] | None = None,
                      timeout_seconds: float = 180.0) -> list[StreamResult]:
    async with AsyncClient(target, api_key=api_key, transport="grpc", timeout_seconds=timeout_seconds,
                           retry=RetryPolicy()) as client:
        return list(await asyncio.gather(*(one_stream(client, model, p, max_tokens, on_token)
                                           for p in prompts)))


async def closed_loop(target: str, api_key: str, model: str, clients: int, seconds: float,
                      texts: Sequence[str], max_tokens: int,
                      log: list[Timed] | None = None) -> list[Timed]:
    """`clients` tasks, each sending the next of `texts` as soon as its previous stream ended, for
    `seconds`; one shared SDK client (one gRPC channel). Returns (monotonic end time, result) pairs,
    appended to `log` as they finish when one is given."""
    log = [] if log is None else log
    deadline = time.monotonic() + seconds
    async with AsyncClient(target, api_key=api_key, transport="grpc", timeout_seconds=120.0,
                           retry=RetryPolicy()) as client:
        async def loop(k: int) -> None:
            i = k
            while time.monotonic() < deadline:
                result = await one_stream(client, model, texts[i % len(texts)], max_tokens)
                log.append((time.monotonic(), result))
                i += 1

        await asyncio.gather(*(loop(k) for k in range(clients)))
    return log
