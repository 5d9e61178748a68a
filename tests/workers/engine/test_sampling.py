"""Sampling and stopping: seeds, top-k/top-p, stop strings and ids, max_tokens, logprobs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.workers.engine.conftest import HFOracle, make_prompts, run_all
from workers.engine.sampler import _filter_top_k_top_p
from workers.engine.types import EngineRequest, SamplingParams

PROMPT = make_prompts([20], seed=21)[0]


def _tokens(engine: Any, sampling: SamplingParams, prompt: list[int] = PROMPT, rid: str = "s") -> list[Any]:
    return run_all(engine, [EngineRequest(rid, tuple(prompt), sampling)])[rid]


def test_seeded_sampling_is_reproducible_and_independent_of_batch(make_engine: Any) -> None:
    engine = make_engine()
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=7, ignore_eos=True)
    alone = [e.token_id for e in _tokens(engine, params)]
    others = [EngineRequest(f"o{i}", tuple(p), SamplingParams(max_tokens=16, temperature=1.0))
              for i, p in enumerate(make_prompts([9, 30], seed=2))]
    batched = run_all(engine, [EngineRequest("s", tuple(PROMPT), params), *others])["s"]
    assert [e.token_id for e in batched] == alone
    other_seed = [e.token_id for e in _tokens(engine, SamplingParams(max_tokens=16, temperature=1.0, seed=8,
                                                                     ignore_eos=True))]
    assert other_seed != alone


def test_top_k_one_is_greedy(make_engine: Any, hf: HFOracle) -> None:
    params = SamplingParams(max_tokens=10, temperature=0.8, top_k=1, seed=1, ignore_eos=True)
    assert [e.token_id for e in _tokens(make_engine(), params)] == hf.greedy(PROMPT, 10)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = _filter_top_k_top_p(logits, 0, 0.7).isfinite().tolist()
    assert kept == [True, True, False, False]
    assert _filter_top_k_top_p(logits, 0, 0.1).isfinite().tolist() == [True, False, False, False]
    assert _filter_top_k_top_p(logits, 2, 1.0).isfinite().tolist() == [True, True, False, False]


def test_logprobs_match_hf(make_engine: Any, hf: HFOracle) -> None:
    events = _tokens(make_engine(), SamplingParams(max_tokens=6, logprobs=True, ignore_eos=True))
    tokens = [e.token_id for e in events]
    assert [e.logprob for e in events] == pytest.approx(hf.logprobs(PROMPT, tokens), abs=1e-4)


def test_stop_token_id_ends_with_stop(make_engine: Any, hf: HFOracle) -> None:
    expected = hf.greedy(PROMPT, 10)
    params = SamplingParams(max_tokens=10, stop_token_ids=(expected[3],), ignore_eos=True)
    events = _tokens(make_engine(), params)
    cut = expected.index(expected[3]) + 1
    assert [e.token_id for e in events] == expected[:cut]
    assert events[-1].finish_reason == "stop" and events[-1].text == ""


def test_stop_string_cuts_text_and_never_retracts(make_engine: Any) -> None:
    engine = make_engine()
    full = _tokens(engine, SamplingParams(max_tokens=24, ignore_eos=True), rid="full")
    text = "".join(e.text for e in full)
    assert text == engine.tokenizer.decode([e.token_id for e in full])  # incremental == one-shot
    stop = text[10:13]
    assert stop.strip() and text.find(stop) == 10
    events = _tokens(engine, SamplingParams(max_tokens=24, stop=(stop,), ignore_eos=True), rid="cut")
    assert "".join(e.text for e in events) == text[:10]
    assert events[-1].finish_reason == "stop"
    assert len(events) < len(full)


def test_max_tokens_counts_tokens_generated_before(make_engine: Any) -> None:
    request = EngineRequest("x", tuple(PROMPT), SamplingParams(max_tokens=5, ignore_eos=True),
                            num_generated_before=3)
    events = run_all(make_engine(), [request])["x"]
    assert len(events) == 2 and events[-1].finish_reason == "length"
