"""Scheduler: budget, priorities, chunking, preemption, and invariants under random workloads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cache.hashing import HashKeys
from tests.workers.engine.steps import apply_step
from workers.engine.block_manager import BlockManager
from workers.engine.scheduler import Scheduler, SchedulerConfig
from workers.engine.sequence import Sequence, SequenceStatus
from workers.engine.types import EngineRequest, SamplingParams

B = 4


def _seq(rid: str, n: int, arrival: int, priority: int = 0, max_tokens: int = 4) -> Sequence:
    request = EngineRequest(rid, tuple(range(1, n + 1)), SamplingParams(max_tokens=max_tokens),
                            priority=priority)
    return Sequence(request, arrival, HashKeys("m"), B)


_finish_step = apply_step


def test_budget_chunks_long_prompt_and_decodes_go_first() -> None:
    sched = Scheduler(SchedulerConfig(max_num_batched_tokens=8), BlockManager(64, B))
    short, long = _seq("a", 3, 1), _seq("b", 20, 2)
    sched.add(short)
    sched.add(long)
    first = sched.schedule()
    assert [(c.seq.request_id, c.num_tokens) for c in first] == [("a", 3), ("b", 5)]
    _finish_step(sched, first)
    second = sched.schedule()
    assert [(c.seq.request_id, c.num_tokens) for c in second] == [("a", 1), ("b", 7)]


def test_without_chunking_a_prompt_waits_for_a_step_of_its_own() -> None:
    config = SchedulerConfig(max_num_batched_tokens=8, enable_chunked_prefill=False)
    sched = Scheduler(config, BlockManager(64, B))
    sched.add(_seq("a", 3, 1))
    sched.add(_seq("b", 20, 2))
    assert [(c.seq.request_id, c.num_tokens) for c in sched.schedule()] == [("a", 3)]


def test_priority_beats_arrival() -> None:
    sched = Scheduler(SchedulerConfig(max_num_seqs=1), BlockManager(64, B))
    sched.add(_seq("late-but-urgent", 3, 2, priority=-1))
    sched.add(_seq("early", 3, 1))
    assert [c.seq.request_id for c in sched.schedule()] == ["late-but-urgent"]


def test_out_of_blocks_preempts_the_lowest_priority_newest() -> None:
    sched = Scheduler(SchedulerConfig(), BlockManager(4, B))
    old, new = _seq("old", 4, 1, max_tokens=8), _seq("new", 4, 2, max_tokens=8)
    sched.add(old)
    sched.add(new)
    _finish_step(sched, sched.schedule())  # each holds 1 full block + needs a 2nd to decode
    _finish_step(sched, sched.schedule())  # both got their 2nd block: pool full
    for _ in range(3):
        _finish_step(sched, sched.schedule())
    chunks = sched.schedule()  # old needs a 3rd block: new is preempted
    assert [c.seq.request_id for c in chunks] == ["old"]
    assert new.status is SequenceStatus.WAITING and new.num_computed_tokens == 0 and not new.block_table
    assert sched.num_preemptions == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 6), st.integers(-1, 1)),
                min_size=1, max_size=12),
       st.integers(6, 40), st.integers(1, 16), st.booleans())
def test_everything_finishes_and_no_block_leaks(requests: list[tuple[int, int, int]], num_blocks: int,
                                               budget: int, chunked: bool) -> None:
    bm = BlockManager(num_blocks, B)
    sched = Scheduler(SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=budget,
                                      enable_chunked_prefill=chunked), bm)
    seqs = [_seq(f"r{i}", n, i, priority=p, max_tokens=m) for i, (n, m, p) in enumerate(requests)]
    seqs = [s for s in seqs if bm.blocks_needed(s.num_tokens + s.request.sampling.max_tokens) <= num_blocks]
    for seq in seqs:
        sched.add(seq)
    done: list[Sequence] = []
    for _ in range(2000):
        if not sched.has_unfinished():
            break
        chunks = sched.schedule()
        assert sum(c.num_tokens for c in chunks) <= max(budget, max((s.num_tokens for s in seqs), default=0))
        assert len({id(c.seq) for c in chunks}) == len(chunks)
        if chunked:
            assert sum(c.num_tokens for c in chunks) <= budget
        done += _finish_step(sched, chunks)
        bm.check_integrity(sched.running)
    assert not sched.has_unfinished(), "scheduler stalled"
    assert sorted(s.request_id for s in done) == sorted(s.request_id for s in seqs)
    assert all(s.num_generated == s.request.sampling.max_tokens for s in done)
    assert bm.num_free_blocks == num_blocks
