"""A request's state inside the engine: its tokens, how many have KV in the pool, its block table."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cache.hashing import BlockHash, HashKeys, hash_block_tokens, root_hash
from workers.engine.types import EngineRequest


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Mutable per-request state, owned by the engine thread.

    `token_ids` = prompt (including `num_generated_before` tokens made elsewhere) + tokens generated
    here. `num_computed_tokens` tokens have KV in the blocks of `block_table`. `block_hashes[i]` is the
    chained hash of full block i: those the request brings (`EngineRequest.block_hashes`), the rest
    filled lazily by `full_block_hashes`.
    """

    request: EngineRequest
    arrival: int
    hash_keys: HashKeys
    block_size: int
    token_ids: list[int] = field(init=False)
    num_prompt_tokens: int = field(init=False)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[BlockHash] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING

    def __post_init__(self) -> None:
        self.token_ids = list(self.request.prompt_token_ids)
        self.num_prompt_tokens = len(self.token_ids)
        self.block_hashes = list(self.request.block_hashes)  # hashed once, by the caller

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def priority_key(self) -> tuple[int, int]:
        """Lower runs first: priority, then arrival (FCFS)."""
        return (self.request.priority, self.arrival)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        """Tokens that count against max_tokens (including those generated before this engine)."""
        return self.request.num_generated_before + len(self.token_ids) - self.num_prompt_tokens

    def block_tokens(self, index: int) -> tuple[int, ...]:
        return tuple(self.token_ids[index * self.block_size : (index + 1) * self.block_size])

    def full_block_hashes(self, num_blocks: int) -> list[BlockHash]:
        """Chained hashes of the first `num_blocks` full blocks (computed once, then remembered)."""
        assert num_blocks * self.block_size <= self.num_tokens, "hash of a block that is not full"
        parent = self.block_hashes[-1] if self.block_hashes else root_hash(self.hash_keys)
        for index in range(len(self.block_hashes), num_blocks):
            parent = hash_block_tokens(parent, self.block_tokens(index), self.hash_keys)
            self.block_hashes.append(parent)
        return self.block_hashes[:num_blocks]
