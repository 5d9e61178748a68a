"""The engine's public vocabulary: what goes in (requests, sampling), what comes out (token events),
and the unit of KV that moves between engines, tiers and workers (`KVBlock`).

The gRPC worker service, the cache tiers and the tests speak only these types; nothing outside
`workers/engine/` touches the block pool, the scheduler or the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cache.hashing import BlockHash
from common.errors import InvalidRequestError

if TYPE_CHECKING:
    import torch

FinishReason = Literal["stop", "length", "abort"]

MAX_STOP_STRINGS = 16


@dataclass(frozen=True)
class SamplingParams:
    """How to choose tokens. `temperature == 0` is greedy. Validated at construction; every error
    names its field (`sampling.top_p`, ...)."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequestError(f"must be an integer >= 1, got {self.max_tokens!r}",
                                      field="sampling.max_tokens")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise InvalidRequestError(f"must be >= 0, got {self.temperature!r}", field="sampling.temperature")
        if self.top_k < 0:
            raise InvalidRequestError(f"must be >= 0 (0 = off), got {self.top_k!r}", field="sampling.top_k")
        if not (0.0 < self.top_p <= 1.0):
            raise InvalidRequestError(f"must be in (0, 1], got {self.top_p!r}", field="sampling.top_p")
        if len(self.stop) > MAX_STOP_STRINGS:
            raise InvalidRequestError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(self.stop)}",
                                      field="sampling.stop")
        for i, s in enumerate(self.stop):
            if not isinstance(s, str) or not s:
                raise InvalidRequestError(f"must be a non-empty string, got {s!r}",
                                          field=f"sampling.stop[{i}]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class EngineRequest:
    """One generation request as the engine sees it.

    `prompt_token_ids` may already end with tokens generated elsewhere (a P/D decode or a migrated
    stream): `num_generated_before` says how many of them count against `sampling.max_tokens`. It is
    below `max_tokens`: the engine always samples at least one token, so a caller with nothing left
    to generate finishes the stream itself.
    Lower `priority` runs first (SLO classes); equal priorities are FCFS.
    `block_hashes`: the chained hashes (cache/hashing.py, the engine's `hash_keys`) of the leading full
    blocks of `prompt_token_ids`, when the caller has them already (the worker service hashes each
    prompt once); the engine's prefix cache then uses them instead of hashing those tokens again. They
    are trusted, not checked: a wrong hash can only miss (a hit re-checks the block's tokens). Empty =
    the engine hashes the prompt itself.
    """

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    priority: int = 0
    adapter: str = ""
    tenant_salt: str = ""
    num_generated_before: int = 0
    block_hashes: tuple[BlockHash, ...] = ()

    def __post_init__(self) -> None:
        if not self.prompt_token_ids:
            raise InvalidRequestError("must not be empty", field="prompt")
        if not 0 <= self.num_generated_before < self.sampling.max_tokens:
            raise InvalidRequestError(
                f"must be in [0, sampling.max_tokens={self.sampling.max_tokens}), "
                f"got {self.num_generated_before}",
                field="num_generated_before")


@dataclass(frozen=True)
class TokenEvent:
    """One sampled token of one request. The last event of a request has `finish_reason` set.

    `text` is the detokenized delta (stop strings already cut off). `num_cached_prompt_tokens` (on the
    first event) counts prompt tokens whose KV came from a cache instead of being computed.
    """

    request_id: str
    token_id: int | None  # None only on a final event that carries no new token (e.g. a stop string)
    text: str
    logprob: float | None = None
    finish_reason: FinishReason | None = None
    num_prompt_tokens: int = 0
    num_cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class KVBlock:
    """The KV of one full block of tokens, detached from any pool.

    `kv` has shape [num_layers, 2, num_kv_heads, block_size, head_dim] (2 = key, value), on CPU, in the
    model's dtype. `block_hash` is the chained hash of `token_ids` with its prefix (cache/hashing.py).
    """

    block_hash: BlockHash
    token_ids: tuple[int, ...]
    kv: torch.Tensor


@dataclass(frozen=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_blocks_total: int
    kv_blocks_free: int
    kv_blocks_cached: int
    block_size: int
    prompt_tokens_total: int
    generated_tokens_total: int
    cached_tokens_total: int
    preemptions_total: int
    held_admissions_total: int = 0  # requests held back for a prefix still being prefilled (scheduler.py)
