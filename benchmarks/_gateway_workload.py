"""The gateway benchmark's workload, fixed by a rule before anything is measured, and its paired stats.

Rule (`WorkloadRule`, defaults: 200 requests, 8 documents, seed 0): request i belongs to document
g = i mod `documents`; its prompt length L_i in tokens is drawn log-uniformly from [128, 2048]
(`numpy.random.default_rng(seed)`, drawn for all requests first); its leading ⌊`shared_fraction`·L_i⌋
tokens (3/4, in whole words) are the first words of document g (seeded words of the model's training
corpus), the rest are words drawn for request i alone. So prompts of one document share a prefix of
many 16-token blocks, and every request still has blocks of its own. Outputs: 32 tokens, greedy,
`ignore_eos`, streamed. Nothing in the rule depends on a measurement.

`Pair` holds one request's timings through the gateway and sent directly to the worker the gateway
chose; `paired_stats` turns pairs into per-request overheads and their percentiles (p99 of the
per-request differences, not a difference of p99s). A request's overhead is the extra time to its first
token; the relay cost of each later token is reported on its own, and so is the end-to-end difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from common.stats import percentile


@dataclass(frozen=True)
class WorkloadRule:
    requests: int = 200
    documents: int = 8
    min_tokens: int = 128
    max_tokens: int = 2048
    shared_fraction: float = 0.75
    output_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"requests: must be >= 1, got {self.requests}")
        if self.documents < 1:
            raise ValueError(f"documents: must be >= 1, got {self.documents}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"min_tokens: must be in [1, max_tokens], got {self.min_tokens}")
        if not 0.0 <= self.shared_fraction < 1.0:
            raise ValueError(f"shared_fraction: must be in [0, 1), got {self.shared_fraction}")

    def describe(self) -> str:
        return (f"{self.requests} requests, prompt lengths log-uniform in [{self.min_tokens}, "
                f"{self.max_tokens}] tokens (seed {self.seed}), request i shares its first "
                f"{self.shared_fraction:.0%} with document i mod {self.documents}; "
                f"{self.output_tokens} streamed output tokens, greedy, ignore_eos")


@dataclass(frozen=True)
class Prompt:
    text: str
    document: int
    shared_tokens: int  # leading tokens taken from the document (whole words)
    target_tokens: int  # L_i of the rule


def build_prompts(rule: WorkloadRule, words: Sequence[str],
                  count_tokens: Callable[[str], int]) -> list[Prompt]:
    """The rule's prompts. `count_tokens(" word")` is the tokenizer's length of one space-led word;
    a byte-level BPE splits on whitespace first, so a prompt's length is the sum over its words."""
    rng = np.random.default_rng(rule.seed)
    lengths = np.exp(rng.uniform(math.log(rule.min_tokens), math.log(rule.max_tokens), rule.requests))
    vocabulary = sorted(set(words))
    cost = {w: count_tokens(" " + w) for w in vocabulary}
    documents = [[vocabulary[k] for k in rng.integers(0, len(vocabulary), rule.max_tokens)]
                 for _ in range(rule.documents)]
    prompts = []
    for i, length in enumerate(lengths):
        target = round(float(length))
        chosen, shared = _take(documents[i % rule.documents], cost, int(rule.shared_fraction * target))
        own = rng.integers(0, len(vocabulary), rule.max_tokens)
        tail, _ = _take([vocabulary[k] for k in own], cost, target - shared)
        prompts.append(Prompt(" ".join(chosen + tail), i % rule.documents, shared, target))
    return prompts


def _take(words: Sequence[str], cost: dict[str, int], budget: int) -> tuple[list[str], int]:
    """The leading words of `words` whose tokens fit in `budget`; (words, tokens used)."""
    out: list[str] = []
    used = 0
    for w in words:
        if used + cost[w] > budget:
            break
        out.append(w)
        used += cost[w]
    return out, used


@dataclass(frozen=True)
class Timing:
    """One streamed request: seconds from send to the first token and to the end of the stream."""

    ttft_seconds: float
    total_seconds: float
    num_tokens: int


@dataclass(frozen=True)
class Pair:
    gateway: Timing
    direct: Timing

    @property
    def overhead_ms(self) -> float:
        """The request's overhead: extra time to its first token (auth, tokenize, hash, index lookup,
        route, plan view, the worker call, the first relay)."""
        return 1000.0 * (self.gateway.ttft_seconds - self.direct.ttft_seconds)

    @property
    def e2e_overhead_ms(self) -> float:
        """Extra time to the end of the stream: the overhead plus the relay of every later token."""
        return 1000.0 * (self.gateway.total_seconds - self.direct.total_seconds)

    @property
    def relay_per_token_ms(self) -> float:
        """Extra time per token after the first: the gateway's relay cost of one token."""
        tokens = max(1, min(self.gateway.num_tokens, self.direct.num_tokens) - 1)
        gateway = self.gateway.total_seconds - self.gateway.ttft_seconds
        direct = self.direct.total_seconds - self.direct.ttft_seconds
        return 1000.0 * (gateway - direct) / tokens


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def paired_stats(prefix: str, pairs: Sequence[Pair]) -> dict[str, float | None]:
    """p50 / p99 of the per-request overheads (`<prefix>_overhead_*_ms`, to the first token), of the
    end-to-end overheads (`_e2e_overhead_*`) and of the relay cost per token; the direct path's own
    p50 TTFT and end-to-end time for scale. Milliseconds, 4 decimals; None when there are no pairs."""
    series = {"overhead": [p.overhead_ms for p in pairs], "e2e_overhead": [p.e2e_overhead_ms for p in pairs],
              "relay_per_token": [p.relay_per_token_ms for p in pairs]}
    out: dict[str, float | None] = {}
    for name, values in series.items():
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            out[f"{prefix}_{name}_{label}_ms"] = _ms(percentile(values, q))
    out[f"{prefix}_direct_ttft_p50_ms"] = _ms(percentile([1000 * p.direct.ttft_seconds for p in pairs], 0.5))
    out[f"{prefix}_direct_e2e_p50_ms"] = _ms(percentile([1000 * p.direct.total_seconds for p in pairs], 0.5))
    return out
