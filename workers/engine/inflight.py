"""In-flight prefix awareness: which running prefill still computes the blocks a waiting request could reuse.

Why: a block enters the prefix cache only after the step that computed it (block_manager.py). A request
admitted while another one on this engine is still prefilling the same prefix (over several chunks, or
in the same step) would compute the shared blocks a second time. The scheduler holds such a request (the
"follower") back until the blocks of that running request (its "holder") are registered, so it gets them
as prefix hits. SGLang does the same inside one batch (a waiting request that shares a long prefix with
one being scheduled is deprioritised); this also covers a chunked prefill already in progress.

`InFlightPrefixes` is built fresh for each admission round from the running sequences still in prefill
(plus each sequence admitted during the round) and changes nothing it is given. Only full prompt blocks
not yet registered count, looked up by chained hash: one hash at block index k stands for the whole
prefix of k + 1 blocks. A hash collision can only cause a needless hold, never wrong KV (a hit is still
re-checked token by token in `BlockManager.match`), and a hold is bounded by the scheduler.
"""

from __future__ import annotations

from cache.hashing import BlockHash
from workers.engine.sequence import Sequence


class InFlightPrefixes:
    """Unregistered full prompt blocks of sequences in prefill this step: chained hash → holder."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._holders: dict[BlockHash, Sequence] = {}

    def add(self, seq: Sequence) -> None:
        """Record the full prompt blocks of `seq` from its first one without KV (computed tokens as of
        the start of this step) to its last full prompt block; no-op once its prefill is done."""
        first = seq.num_computed_tokens // self.block_size
        end = seq.num_prompt_tokens // self.block_size
        if first >= end:
            return
        hashes = seq.full_block_hashes(end)
        for index in range(first, end):
            self._holders.setdefault(hashes[index], seq)

    def holder(self, seq: Sequence, num_matched_blocks: int) -> Sequence | None:
        """The sequence computing block `num_matched_blocks` of `seq` (its first block the cache does
        not hold), or None when no running prefill has it or `seq` could not reuse it anyway (at least
        its last token must be computed, so it reuses at most (num_tokens - 1) // block_size blocks)."""
        if not self._holders or num_matched_blocks >= (seq.num_tokens - 1) // self.block_size:
            return None
        next_hash = seq.full_block_hashes(num_matched_blocks + 1)[num_matched_blocks]
        holder = self._holders.get(next_hash)
        return holder if holder is not seq else None
