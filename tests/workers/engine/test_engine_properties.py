"""The whole engine under random request mixes, aborts and tiny pools: invariants hold, nothing leaks,
every request ends exactly once."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine
from workers.engine.types import EngineRequest, SamplingParams

_ENGINES: dict[tuple[int, int, bool], LLMEngine] = {}


def _engine(model_dir: Path, num_blocks: int, budget: int, chunked: bool) -> LLMEngine:
    key = (num_blocks, budget, chunked)
    if key not in _ENGINES:  # engines are reusable: every example drains what it started
        _ENGINES[key] = LLMEngine(EngineConfig(model_dir, num_kv_blocks=num_blocks, max_num_seqs=4,
                                               max_num_batched_tokens=budget, enable_chunked_prefill=chunked))
    return _ENGINES[key]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 12), st.integers(0, 2),
                                   st.integers(0, 3), st.booleans()), min_size=1, max_size=8),
       num_blocks=st.sampled_from([6, 12, 40]), budget=st.sampled_from([8, 32]), chunked=st.booleans())
def test_random_mixes_finish_cleanly(tiny_model_dir: Path, requests: list[tuple[int, int, int, int, bool]],
                                     num_blocks: int, budget: int, chunked: bool) -> None:
    engine = _engine(tiny_model_dir, num_blocks, budget, chunked)
    finals: dict[str, int] = {}
    abort_at: dict[str, int] = {}
    for i, (length, max_tokens, prefix, priority, abort) in enumerate(requests):
        prompt = tuple([1] + [10 + prefix] * min(length, 20) + list(range(100, 100 + max(0, length - 20))))
        rid = f"r{i}"
        if engine.block_manager.blocks_needed(len(prompt) + 1) > num_blocks:
            continue
        engine.add_request(EngineRequest(rid, prompt, SamplingParams(max_tokens=max_tokens, ignore_eos=True),
                                         priority=priority))
        finals[rid] = 0
        if abort:
            abort_at[rid] = i % 3
    steps = 0
    while engine.has_unfinished():
        for event in engine.step():
            if event.finish_reason is not None:
                finals[event.request_id] += 1
        steps += 1
        for rid, when in list(abort_at.items()):
            if when == steps and engine.abort_request(rid) is not None:
                finals[rid] += 1
                del abort_at[rid]
        engine.block_manager.check_integrity(engine.scheduler.running)
        assert steps < 5000, "engine stalled"
    assert all(count == 1 for count in finals.values()), finals
    assert engine.block_manager.num_free_blocks == num_blocks
    assert not engine.requests
