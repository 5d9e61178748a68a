"""The OpenAI shapes of the worker's HTTP front (workers/openai_http.py): one generation's chunks as a
whole response or as server-sent events, and vLLM-named metrics over the engine's live stats."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from heteroserve.v1 import common_pb2

if TYPE_CHECKING:
    from workers.engine.types import EngineStats


class ServedEngine(Protocol):
    """What the front reads of the worker's engine (native or vLLM): identity, context, live stats."""

    model_id: str
    max_context_tokens: int

    def stats(self) -> EngineStats: ...


class Reply:
    """The OpenAI shape of one generation's chunks, whole or as server-sent events."""

    def __init__(self, request_id: str, created: int, model: str, kind: str) -> None:
        self.head = {"id": request_id, "created": created, "model": model}
        self.chat = kind == "chat.completion"
        self.kind = kind
        self.prompt_tokens = self.cached_tokens = self.completion_tokens = 0

    def _count(self, chunk: common_pb2.TokenChunk, first: bool) -> None:
        if first:
            self.prompt_tokens, self.cached_tokens = chunk.prompt_tokens, chunk.cached_prompt_tokens
        self.completion_tokens += len(chunk.token_ids)

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}

    def _choice(self, text: str, finish: str | None, delta: bool) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        body = {"role": "assistant", "content": text}
        return {"index": 0, ("delta" if delta else "message"): body, "finish_reason": finish,
                "logprobs": None}

    async def whole(self, first: common_pb2.TokenChunk, rest: AsyncIterator[common_pb2.TokenChunk]
                    ) -> dict[str, Any]:
        parts, finish = [], None
        async with contextlib.aclosing(rest):  # type: ignore[type-var]
            for i, chunk in enumerate([first] + [c async for c in rest]):
                self._count(chunk, i == 0)
                parts.append(chunk.text)
                finish = chunk.finish_reason or finish
        return {**self.head, "object": self.kind, "choices": [self._choice("".join(parts), finish, False)],
                "usage": self.usage()}

    async def stream(self, first: common_pb2.TokenChunk, rest: AsyncIterator[common_pb2.TokenChunk],
                     include_usage: bool) -> AsyncIterator[bytes]:
        """SSE frames; a client that disconnects closes `rest`, which aborts the engine request."""
        kind = self.kind + ".chunk" if self.chat else self.kind
        chunk: common_pb2.TokenChunk | None = first
        is_first = True
        async with contextlib.aclosing(rest):  # type: ignore[type-var]
            while chunk is not None:
                self._count(chunk, is_first)
                finish = chunk.finish_reason or None
                choice = self._choice(chunk.text, finish, True)
                yield _event({**self.head, "object": kind, "choices": [choice]})
                is_first = False
                chunk = await anext(rest, None)
        if include_usage:
            yield _event({**self.head, "object": kind, "choices": [], "usage": self.usage()})
        yield b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def vllm_metrics(engine: ServedEngine) -> str:
    """vLLM's metric names (v1) over the engine's stats, read at scrape time. KV usage is the fraction
    of pool blocks not free (0..1); prefix-cache queries/hits count prompt tokens, as in vLLM."""
    stats = engine.stats()
    label = f'{{model_name="{engine.model_id}"}}'
    usage = 1.0 - stats.kv_blocks_free / stats.kv_blocks_total if stats.kv_blocks_total else 0.0
    rows = [("vllm:num_requests_running", "gauge", stats.num_running),
            ("vllm:num_requests_waiting", "gauge", stats.num_waiting),
            ("vllm:kv_cache_usage_perc", "gauge", usage),
            ("vllm:gpu_cache_usage_perc", "gauge", usage),
            ("vllm:num_preemptions_total", "counter", stats.preemptions_total),
            ("vllm:prompt_tokens_total", "counter", stats.prompt_tokens_total),
            ("vllm:generation_tokens_total", "counter", stats.generated_tokens_total),
            ("vllm:prefix_cache_queries_total", "counter", stats.prompt_tokens_total),
            ("vllm:prefix_cache_hits_total", "counter", stats.cached_tokens_total)]
    return "".join(f"# TYPE {name} {kind}\n{name}{label} {float(value)}\n" for name, kind, value in rows)
