"""Block manager: which pool block holds which tokens, prefix caching, LRU reuse of cached blocks.

- A block is either held (ref_count > 0, in some sequence's block table) or free. Free blocks sit in
  one LRU queue; allocation takes from its head. A freed sequence returns its blocks tail-first, so a
  chain's last blocks are reused before its first ones (its prefix stays cached longest).
- A full block whose KV is computed is registered under its chained hash (`commit`). Registration
  happens only after the step that computed it, so a hit never points at KV still to be written.
- On admission (`match`), the longest run of registered blocks covering at most `num_tokens - 1`
  tokens is reused (at least one token must be computed to produce logits). A hit re-checks the block's
  token ids, so a hash collision can never serve wrong KV.
- Reusing a free block that carries a hash evicts it: `on_evict(block_id, hash, token_ids)` runs first
  (the engine copies the KV out for write-back to the cache tiers), then the hash is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from cache.hashing import BlockHash
from workers.engine.sequence import Sequence

EvictCallback = Callable[[int, BlockHash, tuple[int, ...]], None]


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    block_hash: BlockHash | None = None
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReusablePrefix:
    """Result of `match`: cached blocks a sequence may reuse. Changes nothing by itself."""

    block_ids: tuple[int, ...]
    num_tokens: int
    num_free_hits: int  # hits that sit in the free queue (reviving them uses up free blocks)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True,
                 on_evict: EvictCallback | None = None) -> None:
        self.block_size = block_size
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_queue: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[BlockHash, int] = {}
        self.enable_prefix_caching = enable_prefix_caching
        self.on_evict = on_evict

    # ---- queries -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_queue)

    @property
    def num_cached_blocks(self) -> int:
        return len(self.hash_to_block)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def lookup(self, block_hash: BlockHash) -> int | None:
        return self.hash_to_block.get(block_hash)

    def match_hashes(self, hashes: Seq[BlockHash]) -> int:
        """How many leading `hashes` are registered (no token re-check; for routing hints)."""
        count = 0
        for block_hash in hashes:
            if block_hash not in self.hash_to_block:
                break
            count += 1
        return count

    def match(self, seq: Sequence) -> ReusablePrefix:
        """Reusable cached prefix of `seq` (at most num_tokens - 1 tokens). Pure."""
        if not self.enable_prefix_caching:
            return ReusablePrefix((), 0, 0)
        max_blocks = (seq.num_tokens - 1) // self.block_size
        hits: list[int] = []
        for index, block_hash in enumerate(seq.full_block_hashes(max_blocks)):
            block_id = self.hash_to_block.get(block_hash)
            if block_id is None or self.blocks[block_id].token_ids != seq.block_tokens(index):
                break
            hits.append(block_id)
        free_hits = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return ReusablePrefix(tuple(hits), len(hits) * self.block_size, free_hits)

    # ---- admission and growth (paired verbs) -------------------------------------------------
    def can_allocate(self, match: ReusablePrefix, num_new_tokens: int) -> bool:
        new_blocks = self.blocks_needed(match.num_tokens + num_new_tokens) - len(match.block_ids)
        return new_blocks + match.num_free_hits <= self.num_free_blocks

    def allocate(self, seq: Sequence, match: ReusablePrefix, num_new_tokens: int) -> None:
        """Hold the matched blocks and enough new ones for `num_new_tokens` more tokens; sets the
        sequence's block table and computed/cached token counts."""
        assert not seq.block_table, f"{seq.request_id} already holds blocks"
        assert self.can_allocate(match, num_new_tokens), "allocate() without can_allocate()"
        for block_id in match.block_ids:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free_queue[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        seq.num_computed_tokens = match.num_tokens
        seq.num_cached_tokens = match.num_tokens
        self.append_slots(seq, num_new_tokens)

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        needed = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        return needed <= self.num_free_blocks

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        """Grow the block table to hold `num_new_tokens` tokens beyond the computed ones."""
        needed = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        for _ in range(needed):
            seq.block_table.append(self._take_free_block())

    def free(self, seq: Sequence) -> None:
        """Release the sequence's blocks (tail first into the LRU queue); clears its block table."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            assert block.ref_count > 0, f"double free of block {block_id} by {seq.request_id}"
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.block_hash is None:
                    block.token_ids = ()
                self.free_queue[block_id] = None
        seq.block_table = []

    # ---- registration --------------------------------------------------------------------
    def commit(self, seq: Sequence) -> list[BlockHash]:
        """Register the sequence's newly computed full blocks; returns the hashes newly stored."""
        if not self.enable_prefix_caching:
            return []
        num_full = seq.num_computed_tokens // self.block_size
        stored: list[BlockHash] = []
        hashes = seq.full_block_hashes(num_full)
        for index in range(num_full):
            block = self.blocks[seq.block_table[index]]
            if block.block_hash is not None or hashes[index] in self.hash_to_block:
                continue
            block.block_hash, block.token_ids = hashes[index], seq.block_tokens(index)
            self.hash_to_block[hashes[index]] = block.block_id
            stored.append(hashes[index])
        return stored

    def touch(self, block_id: int) -> None:
        """Mark a free cached block as most recently used (it moves to the tail of the LRU queue)."""
        if self.blocks[block_id].ref_count == 0:
            self.free_queue.move_to_end(block_id)

    def insert_cached(self, block_hash: BlockHash, token_ids: tuple[int, ...]) -> int | None:
        """Register a free block for KV that arrives from outside (import). Returns its id for the
        caller to fill, or None when the hash is already registered or no block is free."""
        if block_hash in self.hash_to_block or not self.free_queue:
            return None
        block_id = self._take_free_block()
        block = self.blocks[block_id]
        block.block_hash, block.token_ids, block.ref_count = block_hash, tuple(token_ids), 0
        self.hash_to_block[block_hash] = block_id
        self.free_queue[block_id] = None
        return block_id

    def invalidate(self, block_id: int) -> None:
        """Forget what a free block holds: its hash leaves the prefix cache, so no request matches it again
        and it is not offered to `on_evict`. For KV found corrupt; the caller first frees every sequence
        holding the block (they are recomputed)."""
        block = self.blocks[block_id]
        assert block.ref_count == 0, f"invalidate of block {block_id} still held ({block.ref_count} refs)"
        if block.block_hash is not None:
            del self.hash_to_block[block.block_hash]
        block.block_hash, block.token_ids = None, ()

    def _take_free_block(self) -> int:
        block_id, _ = self.free_queue.popitem(last=False)
        block = self.blocks[block_id]
        assert block.ref_count == 0, f"block {block_id} in the free queue with ref_count {block.ref_count}"
        if block.block_hash is not None:
            if self.on_evict is not None:
                self.on_evict(block_id, block.block_hash, block.token_ids)
            del self.hash_to_block[block.block_hash]
            block.block_hash, block.token_ids = None, ()
        block.ref_count = 1
        return block_id

    def check_integrity(self, sequences: Seq[Sequence]) -> None:
        """Re-derive the invariants from scratch (tests and property tests call this)."""
        refs = [0] * self.num_blocks
        for seq in sequences:
            for block_id in seq.block_table:
                refs[block_id] += 1
        for block in self.blocks:
            assert block.ref_count == refs[block.block_id], f"block {block.block_id}: ref_count mismatch"
            assert (block.ref_count == 0) == (block.block_id in self.free_queue), \
                f"block {block.block_id}: free queue membership disagrees with ref_count"
            if block.block_hash is not None:
                assert self.hash_to_block[block.block_hash] == block.block_id, "hash map out of sync"
        assert len(self.hash_to_block) == sum(b.block_hash is not None for b in self.blocks), "stale hashes"
