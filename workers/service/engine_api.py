"""`WorkerEngine`: what the Worker service needs of the engine it hosts.

Two engines implement it: `workers.engine.async_engine.AsyncEngine` (native) and
`workers.vllm.engine.VLLMEngine` (vLLM's AsyncLLM). Structural: neither imports this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from workers.engine.types import EngineRequest, EngineStats, TokenEvent
from workers.kv.bridge import KVEngine


class Vocabulary(Protocol):
    def get_vocab_size(self) -> int: ...


class WorkerEngine(KVEngine, Protocol):
    """`KVEngine` (hash keys, prefix match, block export/import) plus requests, stats and lifecycle.

    `generate` streams a request's `TokenEvent`s (the last has `finish_reason`) and raises
    `InvalidRequestError` naming the field for bad input; leaving early aborts the request.
    `max_context_tokens` and `tokenizer.get_vocab_size()` bound valid prompts; `max_num_seqs` and
    `stats().kv_blocks_total` are the capacity the worker registers.
    """

    max_context_tokens: int
    max_num_seqs: int

    @property
    def tokenizer(self) -> Vocabulary: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def generate(self, request: EngineRequest) -> AsyncIterator[TokenEvent]: ...

    def stats(self) -> EngineStats: ...
