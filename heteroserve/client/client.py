"""`AsyncClient` and `Client`: the Python SDK of a heteroserve gateway.

    client = heteroserve.Client("http://127.0.0.1:8000", api_key="sk-...")          # REST
    client = heteroserve.Client("127.0.0.1:9000", api_key="sk-...", transport="grpc")
    done = client.complete("Once upon a time", model="tiny", max_tokens=16, slo_class="interactive")
    print(done.text, done.route.worker_id, done.route.cached_prompt_tokens)
    for chunk in client.stream("Once upon a time", model="tiny"): print(chunk.text, end="")

Errors are the typed errors of `common.errors`. Retryable ones (unavailable, timeout, capacity,
rate limited) are retried with backoff (`RetryPolicy`) while nothing was received yet; a stream that
fails after its first chunk raises, since the caller already holds part of the answer.
`Client` runs an `AsyncClient` on its own private event loop; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, Protocol

from heteroserve.client.retry import RetryPolicy
from heteroserve.client.types import Chunk, Completion, Model, Request, Route, Usage, collect

Transport = Literal["rest", "grpc"]
Messages = Sequence[tuple[str, str]] | Sequence[dict[str, str]]


class _Transport(Protocol):
    async def close(self) -> None: ...
    async def models(self) -> list[Model]: ...
    async def complete(self, request: Request) -> Chunk: ...
    def stream(self, request: Request) -> AsyncIterator[Chunk]: ...


def _messages(messages: Messages) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1]) for m in messages)


class AsyncClient:
    """`target` is a base URL (`http://host:port`) for REST or `host:port` for gRPC."""

    def __init__(self, target: str, *, api_key: str | None = None, transport: Transport = "rest",
                 timeout_seconds: float = 60.0, retry: RetryPolicy | None = None, slo_class: str = "",
                 tenant: str = "") -> None:
        if transport == "rest":
            from heteroserve.client.rest import RestTransport

            self._transport: _Transport = RestTransport(target, api_key, timeout_seconds)
        elif transport == "grpc":
            from heteroserve.client.grpc import GrpcTransport

            self._transport = GrpcTransport(target, api_key, timeout_seconds)
        else:
            raise ValueError(f"transport must be 'rest' or 'grpc', got {transport!r}")
        self.retry = retry or RetryPolicy()
        self._defaults = {"slo_class": slo_class, "tenant": tenant}
        self._rng = random.Random()

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _request(self, model: str, prompt: str | None, messages: Messages | None, **kw: Any) -> Request:
        for key, value in self._defaults.items():
            if not kw.get(key):
                kw[key] = value
        extra = kw.pop("extra", None) or {}
        return Request(model=model, prompt=prompt, messages=_messages(messages) if messages else None,
                       stop=tuple(kw.pop("stop", ()) or ()), extra=extra, **kw)

    async def models(self) -> list[Model]:
        return await self._with_retries(self._transport.models)

    async def complete(self, prompt: str, *, model: str, **kw: Any) -> Completion:
        """One completion. Keyword arguments: max_tokens, temperature, top_p, top_k, seed, stop,
        ignore_eos, and the hints slo_class, session_id, tenant."""
        request = self._request(model, prompt, None, **kw)
        return collect([await self._with_retries(lambda: self._transport.complete(request))], model)

    async def chat(self, messages: Messages, *, model: str, **kw: Any) -> Completion:
        """One chat completion; `messages` are (role, content) pairs or {"role", "content"} dicts."""
        request = self._request(model, None, messages, **kw)
        return collect([await self._with_retries(lambda: self._transport.complete(request))], model)

    def stream(self, prompt: str, *, model: str, **kw: Any) -> AsyncIterator[Chunk]:
        return self._stream(self._request(model, prompt, None, **kw))

    def chat_stream(self, messages: Messages, *, model: str, **kw: Any) -> AsyncIterator[Chunk]:
        return self._stream(self._request(model, None, messages, **kw))

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        attempt = 0
        while True:
            attempt += 1
            received = False
            try:
                async for chunk in self._transport.stream(request):
                    received = True
                    yield chunk
                return
            except Exception as exc:
                if received or not self.retry.should_retry(exc, attempt):
                    raise
            await asyncio.sleep(self.retry.delay(attempt, self._rng))

    async def _with_retries(self, call: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except Exception as exc:
                if not self.retry.should_retry(exc, attempt):
                    raise
            await asyncio.sleep(self.retry.delay(attempt, self._rng))


class Client:
    """The blocking SDK: the same methods as `AsyncClient`, streams as plain iterators."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = self._loop.run_until_complete(_make(target, kwargs))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._async.close())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def models(self) -> list[Model]:
        return self._loop.run_until_complete(self._async.models())

    def complete(self, prompt: str, *, model: str, **kw: Any) -> Completion:
        return self._loop.run_until_complete(self._async.complete(prompt, model=model, **kw))

    def chat(self, messages: Messages, *, model: str, **kw: Any) -> Completion:
        return self._loop.run_until_complete(self._async.chat(messages, model=model, **kw))

    def stream(self, prompt: str, *, model: str, **kw: Any) -> Iterator[Chunk]:
        return self._iterate(self._async.stream(prompt, model=model, **kw))

    def chat_stream(self, messages: Messages, *, model: str, **kw: Any) -> Iterator[Chunk]:
        return self._iterate(self._async.chat_stream(messages, model=model, **kw))

    def _iterate(self, chunks: AsyncIterator[Chunk]) -> Iterator[Chunk]:
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(anext(chunks))
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run_until_complete(chunks.aclose())  # type: ignore[attr-defined]


async def _make(target: str, kwargs: dict[str, Any]) -> AsyncClient:
    return AsyncClient(target, **kwargs)  # grpc.aio channels bind to the loop they are created on


__all__ = ["AsyncClient", "Chunk", "Client", "Completion", "Model", "Route", "Usage", "collect"]
