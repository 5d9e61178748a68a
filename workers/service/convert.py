"""Protobuf <-> engine types, and the request checks that need the model's limits.

Every error names the request field (`prompt_token_ids`, `sampling.top_p`, ...) so the client sees
INVALID_ARGUMENT with a message saying exactly what to fix. Proto defaults follow common.proto:
`top_p` 0 is read as 1 (unset); an absent `seed` is None.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cache.hashing import BlockHash
from common.errors import InvalidRequestError
from heteroserve.v1 import common_pb2, worker_pb2
from workers.engine.types import EngineRequest, SamplingParams, TokenEvent
from workers.kv.loader import KVTransfer


@dataclass(frozen=True)
class ModelLimits:
    """What a request must fit: the context window and the vocabulary (token ids < vocab_size)."""

    max_context_tokens: int
    vocab_size: int


def sampling_from_proto(params: common_pb2.SamplingParams) -> SamplingParams:
    """The engine's `SamplingParams`; raises `InvalidRequestError` naming the bad `sampling.*` field."""
    try:
        return SamplingParams(
            max_tokens=int(params.max_tokens),
            temperature=float(params.temperature),
            top_k=int(params.top_k),
            top_p=float(params.top_p) if params.top_p != 0 else 1.0,
            seed=int(params.seed) if params.HasField("seed") else None,
            stop=tuple(params.stop),
            stop_token_ids=tuple(int(t) for t in params.stop_token_ids),
            ignore_eos=bool(params.ignore_eos),
            logprobs=bool(params.logprobs),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(str(exc), field="sampling") from None


def check_prompt(token_ids: Sequence[int], limits: ModelLimits, field: str = "prompt_token_ids") -> None:
    """Raises `InvalidRequestError` when the prompt is empty, leaves no room for one output token, or
    holds a token id outside the vocabulary."""
    if not token_ids:
        raise InvalidRequestError("must not be empty", field=field)
    if len(token_ids) >= limits.max_context_tokens:
        raise InvalidRequestError(
            f"{len(token_ids)} tokens leave no room in the model's context of {limits.max_context_tokens}",
            field=field)
    low, high = min(token_ids), max(token_ids)
    if low < 0 or high >= limits.vocab_size:
        bad = low if low < 0 else high
        raise InvalidRequestError(f"token id {bad} outside the vocabulary [0, {limits.vocab_size})",
                                  field=field)


def engine_request(
    request_id: str,
    prompt: Sequence[int],
    sampling: common_pb2.SamplingParams,
    cache_keys: common_pb2.CacheKeys,
    limits: ModelLimits,
    *,
    priority: int = 0,
    generated: Sequence[int] = (),
) -> EngineRequest:
    """Validate and build one `EngineRequest`. `generated` are output tokens already produced
    elsewhere: they are appended to the prompt and count against `max_tokens`."""
    check_prompt(prompt, limits)
    if generated:
        check_prompt(list(prompt) + list(generated), limits, field="generated_token_ids")
    params = sampling_from_proto(sampling)
    if len(generated) > params.max_tokens:
        raise InvalidRequestError(f"{len(generated)} tokens already exceed sampling.max_tokens "
                                  f"{params.max_tokens}", field="generated_token_ids")
    return EngineRequest(
        request_id=request_id or uuid.uuid4().hex,
        prompt_token_ids=tuple(int(t) for t in prompt) + tuple(int(t) for t in generated),
        sampling=params,
        priority=int(priority),
        adapter=cache_keys.adapter,
        tenant_salt=cache_keys.tenant_salt,
        num_generated_before=len(generated),
    )


def kv_transfer(source: worker_pb2.KVSource, num_prompt_tokens: int) -> KVTransfer | None:
    """Where a Decode's KV waits (`worker_address` wins over `shared_tier`); None when neither is set."""
    hashes = tuple(BlockHash(h) for h in source.block_hashes)
    if source.worker_address:
        return KVTransfer("peer", num_prompt_tokens, source.worker_address, hashes)
    if source.shared_tier:
        return KVTransfer("shared", num_prompt_tokens, block_hashes=hashes)
    return None


def token_chunk(event: TokenEvent, worker_id: str, *, first: bool) -> common_pb2.TokenChunk:
    """One `TokenChunk` for one engine event; prompt counts are set on the first chunk only."""
    chunk = common_pb2.TokenChunk(
        request_id=event.request_id, text=event.text, finish_reason=event.finish_reason or "",
        worker_id=worker_id)
    if event.token_id is not None:
        chunk.token_ids.append(event.token_id)
        if event.logprob is not None:
            chunk.logprobs.append(event.logprob)
    if first:
        chunk.prompt_tokens = event.num_prompt_tokens
        chunk.cached_prompt_tokens = event.num_cached_prompt_tokens
    return chunk


def merge_chunks(chunks: Sequence[common_pb2.TokenChunk]) -> common_pb2.TokenChunk:
    """One chunk holding the tokens, text and logprobs of `chunks`, with the first's prompt counts and
    the last's finish reason."""
    merged = common_pb2.TokenChunk()
    merged.CopyFrom(chunks[0])
    for chunk in chunks[1:]:
        merged.token_ids.extend(chunk.token_ids)
        merged.logprobs.extend(chunk.logprobs)
        merged.text += chunk.text
        merged.finish_reason = chunk.finish_reason
    return merged
