"""Block manager: exact block ids, exact eviction order, and invariants under random operations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cache.hashing import HashKeys
from workers.engine.block_manager import BlockManager
from workers.engine.sequence import Sequence
from workers.engine.types import EngineRequest

KEYS = HashKeys("m")
B = 4


def _seq(tokens: list[int], arrival: int = 0) -> Sequence:
    return Sequence(EngineRequest(f"s{arrival}", tuple(tokens)), arrival, KEYS, B)


def _run_prefill(bm: BlockManager, seq: Sequence) -> None:
    """Admit and fully 'compute' a sequence (what the engine does around a step)."""
    match = bm.match(seq)
    bm.allocate(seq, match, seq.num_tokens - match.num_tokens)
    seq.num_computed_tokens = seq.num_tokens
    bm.commit(seq)


def test_allocate_takes_lowest_free_blocks_and_commit_registers_full_ones() -> None:
    bm = BlockManager(8, B)
    seq = _seq(list(range(10)))
    _run_prefill(bm, seq)
    assert seq.block_table == [0, 1, 2]
    assert bm.num_cached_blocks == 2  # the third block holds 2 of 4 tokens
    assert bm.num_free_blocks == 5
    bm.free(seq)
    assert list(bm.free_queue) == [3, 4, 5, 6, 7, 2, 1, 0]  # freed tail-first, behind the never-used
    bm.check_integrity([])


def test_prefix_hit_reuses_blocks_and_rechecks_tokens() -> None:
    bm = BlockManager(8, B)
    first = _seq(list(range(9)), 1)
    _run_prefill(bm, first)
    bm.free(first)
    again = _seq([*range(8), 99, 100], 2)
    match = bm.match(again)
    assert match.block_ids == (0, 1) and match.num_tokens == 8 and match.num_free_hits == 2
    # forge a collision: the registered hash of block 1 now claims other tokens -> no hit past block 0
    bm.blocks[1].token_ids = (0, 0, 0, 0)
    assert bm.match(again).block_ids == (0,)


def test_full_hit_leaves_one_token_to_compute() -> None:
    bm = BlockManager(8, B)
    seq = _seq(list(range(8)), 1)
    _run_prefill(bm, seq)
    bm.free(seq)
    assert bm.match(_seq(list(range(8)), 2)).num_tokens == 4  # not 8: the last token must be computed


def test_eviction_order_is_lru_and_reports_evicted_blocks() -> None:
    evicted: list[int] = []
    bm = BlockManager(4, B, on_evict=lambda block_id, h, tokens: evicted.append(block_id))
    a, b = _seq(list(range(8)), 1), _seq(list(range(100, 108)), 2)
    _run_prefill(bm, a)  # blocks 0, 1
    _run_prefill(bm, b)  # blocks 2, 3
    bm.free(a)  # queue: 1, 0
    bm.free(b)  # queue: 1, 0, 3, 2
    c = _seq(list(range(200, 212)), 3)
    _run_prefill(bm, c)  # needs 3 blocks
    assert c.block_table == [1, 0, 3]
    assert evicted == [1, 0, 3]
    assert bm.lookup(b.block_hashes[0]) == 2 and bm.lookup(a.block_hashes[0]) is None
    bm.check_integrity([c])


def test_insert_cached_registers_an_unreferenced_block() -> None:
    bm = BlockManager(4, B)
    seq = _seq(list(range(8)), 1)
    hashes = seq.full_block_hashes(2)
    assert bm.insert_cached(hashes[0], (0, 1, 2, 3)) == 0
    assert bm.insert_cached(hashes[0], (0, 1, 2, 3)) is None  # already there
    assert bm.match_hashes(hashes) == 1
    assert bm.match(_seq(list(range(9)), 2)).block_ids == (0,)
    bm.check_integrity([])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "grow", "free"]), st.integers(0, 7), st.integers(1, 9)),
                max_size=40))
def test_invariants_hold_under_random_operations(ops: list[tuple[str, int, int]]) -> None:
    bm = BlockManager(12, B)
    live: dict[int, Sequence] = {}
    arrival = 0
    for op, key, n in ops:
        seq = live.get(key)
        if op == "add" and seq is None:
            arrival += 1
            # few distinct token patterns so that prefixes are shared
            new = _seq([(key % 3) * 10 + i % 5 for i in range(n * 2)], arrival)
            match = bm.match(new)
            if bm.can_allocate(match, new.num_tokens - match.num_tokens):
                _run_prefill(bm, new)
                live[key] = new
        elif op == "grow" and seq is not None:
            seq.token_ids.extend([7] * n)
            if bm.can_append(seq, n):
                bm.append_slots(seq, n)
                seq.num_computed_tokens += n
                bm.commit(seq)
            else:
                seq.token_ids = seq.token_ids[:-n]
        elif op == "free" and seq is not None:
            bm.free(live.pop(key))
        bm.check_integrity(list(live.values()))
        assert bm.num_free_blocks + len({b for s in live.values() for b in s.block_table}) == 12
    for seq in live.values():
        bm.free(seq)
    bm.check_integrity([])
    assert bm.num_free_blocks == 12
