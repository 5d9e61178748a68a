"""Hold-back: a request sharing a prefix that a running prefill is still computing waits for its blocks.

Scheduler-level tests drive steps by hand (block size 4, exact chunks); engine-level tests use the tiny
model (block size 16) and check prefix hits, greedy tokens against HF, and the worker's counter.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from cache.hashing import HashKeys
from tests.workers.engine.conftest import HFOracle, greedy_request, make_prompts
from tests.workers.engine.steps import apply_step
from workers.engine.block_manager import BlockManager
from workers.engine.scheduler import ScheduledChunk, Scheduler, SchedulerConfig
from workers.engine.sequence import Sequence, SequenceStatus
from workers.engine.types import EngineRequest, SamplingParams
from workers.metrics import WorkerMetrics

B = 4


def _seq(rid: str, tokens: list[int], arrival: int) -> Sequence:
    request = EngineRequest(rid, tuple(tokens), SamplingParams(max_tokens=4))
    return Sequence(request, arrival, HashKeys("m"), B)


def _commit(sched: Scheduler, chunks: list[ScheduledChunk]) -> None:
    apply_step(sched, chunks, finish=False)


def _ids(chunks: list[ScheduledChunk]) -> list[tuple[str, int]]:
    return [(c.seq.request_id, c.num_tokens) for c in chunks]


def _holder_in_its_last_chunk() -> tuple[Scheduler, Sequence, Sequence, list[ScheduledChunk]]:
    """Holder h (14 tokens) computed 8 in step 1; f (the same 14 tokens) arrives; step 2 gives h its
    last 6 tokens and holds f, whose next block (tokens 9-12) h is computing."""
    sched = Scheduler(SchedulerConfig(max_num_batched_tokens=8), BlockManager(64, B))
    holder, follower = _seq("h", list(range(1, 15)), 1), _seq("f", list(range(1, 15)), 2)
    sched.add(holder)
    _commit(sched, sched.schedule())
    sched.add(follower)
    chunks = sched.schedule()
    assert _ids(chunks) == [("h", 6)]
    assert follower.status is SequenceStatus.WAITING and sched.num_held == 1
    return sched, holder, follower, chunks


def test_follower_waits_one_step_then_reuses_every_shared_block() -> None:
    sched, _, follower, chunks = _holder_in_its_last_chunk()
    _commit(sched, chunks)
    assert _ids(sched.schedule()) == [("h", 1), ("f", 2)]  # 12 of 14 tokens hit (the cap is 13)
    assert follower.num_cached_tokens == 12


def test_follower_is_released_when_the_holder_is_aborted_mid_prefill() -> None:
    sched, holder, follower, _ = _holder_in_its_last_chunk()
    sched.remove(holder)  # aborted before its last chunk was committed
    assert _ids(sched.schedule()) == [("f", 6)]
    assert follower.num_cached_tokens == 8  # the two blocks the holder registered in step 1


def test_hold_is_bounded_by_the_holders_remaining_chunks() -> None:
    sched, _, follower, _ = _holder_in_its_last_chunk()
    # Steps that never complete (the holder does not advance): remaining 6 tokens = 1 chunk at budget
    # 8, so f may be held in its first step and one more, then it is admitted anyway.
    assert _ids(sched.schedule()) == [("h", 6)]
    assert _ids(sched.schedule()) == [("h", 6), ("f", 2)]
    assert follower.num_cached_tokens == 8 and sched.num_held == 1


def test_unrelated_requests_behind_a_held_one_are_admitted_in_order() -> None:
    sched = Scheduler(SchedulerConfig(max_num_batched_tokens=32), BlockManager(64, B))
    holder, follower = _seq("h", list(range(1, 15)), 1), _seq("f", list(range(1, 11)), 2)
    first, second = _seq("u1", list(range(100, 106)), 3), _seq("u2", list(range(200, 203)), 4)
    for seq in (holder, follower, first, second):
        sched.add(seq)
    chunks = sched.schedule()
    assert _ids(chunks) == [("h", 14), ("u1", 6), ("u2", 3)]  # same step: f is held, u1 and u2 are not
    assert [s.request_id for _, s in sched.waiting] == ["f"]
    _commit(sched, chunks)
    assert _ids(sched.schedule()) == [("h", 1), ("u1", 1), ("u2", 1), ("f", 2)]  # 8 of 10 tokens hit
    assert follower.num_cached_tokens == 8


def test_no_hold_without_prefix_caching() -> None:
    bm = BlockManager(64, B, enable_prefix_caching=False)
    sched = Scheduler(SchedulerConfig(max_num_batched_tokens=32), bm)
    sched.add(_seq("h", list(range(1, 15)), 1))
    sched.add(_seq("f", list(range(1, 15)), 2))
    assert _ids(sched.schedule()) == [("h", 14), ("f", 14)] and sched.num_held == 0


# ---- the real engine (tiny model, block size 16) ---------------------------------------------------

def _shared_prompts() -> tuple[list[int], list[int]]:
    """A 200-token holder prompt and a follower sharing its first 160 tokens (10 blocks)."""
    holder, tail = make_prompts([200, 41], seed=7)
    return holder, holder[:160] + tail[1:]


def _step_until_done(engine: Any) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = {}
    while engine.has_unfinished():
        for event in engine.step():
            if event.token_id is not None:
                tokens.setdefault(event.request_id, []).append(event.token_id)
        engine.block_manager.check_integrity(engine.scheduler.running)
    return tokens


def test_follower_during_chunked_prefill_gets_the_shared_blocks_as_hits(make_engine: Any,
                                                                       hf: HFOracle) -> None:
    engine = make_engine(max_num_batched_tokens=128)
    holder, follower = _shared_prompts()
    engine.add_request(greedy_request("h", holder, 4))
    engine.step()  # the holder's first chunk: 128 tokens, 8 blocks registered
    engine.add_request(greedy_request("f", follower, 4))
    seq = engine.requests["f"].seq
    tokens = _step_until_done(engine)
    assert seq.num_cached_tokens == 160  # without hold-back: 128, admitted beside the holder's last chunk
    assert tokens["f"] == hf.greedy(follower, 4) and tokens["h"] == hf.greedy(holder, 4)
    stats = engine.stats()
    assert stats.held_admissions_total == 1
    registry = CollectorRegistry()
    WorkerMetrics(registry).observe_engine_stats(stats)
    assert registry.get_sample_value("heteroserve_worker_held_admissions_total") == 1.0


def test_follower_arriving_with_its_holder_waits_for_it(make_engine: Any, hf: HFOracle) -> None:
    engine = make_engine()
    holder, follower = _shared_prompts()
    unrelated = make_prompts([30], seed=8)[0]
    for rid, prompt in (("h", holder), ("f", follower), ("u", unrelated)):
        engine.add_request(greedy_request(rid, prompt, 4))
    seq = engine.requests["f"].seq
    first = {e.request_id for e in engine.step()}
    assert first == {"h", "u"}  # the unrelated request behind the held one is not delayed
    tokens = _step_until_done(engine)
    assert seq.num_cached_tokens == 160  # without hold-back: 0 (admitted in the holder's step)
    assert tokens["f"] == hf.greedy(follower, 4)


def test_held_follower_runs_after_its_holder_is_aborted(make_engine: Any, hf: HFOracle) -> None:
    engine = make_engine(max_num_batched_tokens=128)
    holder, follower = _shared_prompts()
    engine.add_request(greedy_request("h", holder, 4))
    engine.step()
    engine.add_request(greedy_request("f", follower, 4))
    engine.step()  # the holder's last chunk; the follower is held
    seq = engine.requests["f"].seq
    assert seq.status is SequenceStatus.WAITING and engine.stats().held_admissions_total == 1
    assert engine.abort_request("h") is not None
    tokens = _step_until_done(engine)
    assert seq.num_cached_tokens == 160  # the aborted holder's blocks stay in the prefix cache
    assert tokens["f"] == hf.greedy(follower, 4) and "h" not in tokens
