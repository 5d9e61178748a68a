"""Engine test fixtures: the tiny model, HF `transformers` as the greedy oracle, engines to drive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine
from workers.engine.types import EngineRequest, SamplingParams, TokenEvent

VOCAB = 2048


def make_prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [[1, *torch.randint(4, VOCAB, (n - 1,), generator=gen).tolist()] for n in lengths]


class HFOracle:
    """Greedy continuations from `transformers`, one prompt at a time (no padding), memoised."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.memo: dict[tuple[tuple[int, ...], int], list[int]] = {}

    def greedy(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        key = (tuple(prompt), max_new_tokens)
        if key not in self.memo:
            ids = torch.tensor([prompt])
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                          pad_token_id=3)
            self.memo[key] = out[0, len(prompt):].tolist()
        return self.memo[key]

    def logprobs(self, prompt: list[int], tokens: list[int]) -> list[float]:
        ids = torch.tensor([prompt + tokens])
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        return [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


@pytest.fixture(scope="session")
def hf(tiny_model_dir: Path) -> HFOracle:
    return HFOracle(tiny_model_dir)


@pytest.fixture
def make_engine(tiny_model_dir: Path) -> Iterator[Any]:
    def build(**overrides: Any) -> LLMEngine:
        return LLMEngine(EngineConfig(tiny_model_dir, **{"num_kv_blocks": 256, **overrides}))

    yield build


def run_all(engine: LLMEngine, requests: list[EngineRequest], check: bool = True
            ) -> dict[str, list[TokenEvent]]:
    """Add every request, step until done; events per request id. Checks block invariants each step."""
    for request in requests:
        engine.add_request(request)
    events: dict[str, list[TokenEvent]] = {r.request_id: [] for r in requests}
    while engine.has_unfinished():
        for event in engine.step():
            events[event.request_id].append(event)
        if check:
            engine.block_manager.check_integrity(engine.scheduler.running)
    return events


def greedy_request(request_id: str, prompt: list[int], max_tokens: int, **kwargs: Any) -> EngineRequest:
    return EngineRequest(request_id, tuple(prompt), SamplingParams(max_tokens=max_tokens, ignore_eos=True),
                         **kwargs)
