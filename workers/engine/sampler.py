"""Choose the next token of every sampled row of a step.

Greedy rows take the argmax (one batched op for all of them). Other rows, one at a time: logits /
temperature, keep the top_k largest, keep the smallest set of tokens whose probability reaches top_p
(the most likely token always stays), then draw with the request's own `torch.Generator` (seeded from
`sampling.seed` when given, so a seeded request gives the same tokens whatever else is batched with it).
Logprobs, when asked for, are of the chosen token under the model's raw distribution (before
temperature, top-k and top-p).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workers.engine.types import SamplingParams


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, params: Sequence[SamplingParams],
           generators: Sequence[torch.Generator]) -> tuple[list[int], list[float] | None]:
    """logits [rows, vocab] float32 -> (token ids, logprobs or None when no row asked for them)."""
    tokens = torch.argmax(logits, dim=-1)
    for row, p in enumerate(params):
        if p.greedy:
            continue
        filtered = _filter_top_k_top_p(logits[row] / p.temperature, p.top_k, p.top_p)
        probs = torch.softmax(filtered, dim=-1)
        tokens[row] = torch.multinomial(probs, 1, generator=generators[row])[0]
    logprobs = None
    if any(p.logprobs for p in params):
        chosen = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None])[:, 0]
        logprobs = chosen.tolist()
    return tokens.tolist(), logprobs
