"""The demo's workload: a public trace (Azure LLM inference, conversation) scaled to this machine.

Scaling, stated in the report:
- lengths: prompt tokens × `input_scale` (clipped to [min_input, max_input]), output tokens ×
  `output_scale` (clipped to [min_output, max_output]), so prompts fit the tiny model's context and
  a 2-core machine keeps up;
- arrivals: each (phase, class) stream of n = rate × duration requests takes the next n + 1
  inter-arrival gaps of the trace, in trace order, blended with their mean (gap' = (1 − b)·mean +
  b·gap, b = `burstiness`, 0.5 by default: bursts keep half their depth, so a 2-minute demo's load
  step is not hidden by one of the trace's lulls) and scaled so that they span the phase: the phase
  gets exactly the rate asked for.
A request's class follows the plan's length bounds: prompts of at most `chat_max_input` tokens are
`chat`, longer ones `long` (raised to at least `long_min_input` tokens). Each prompt starts with one
of `num_system_prompts` fixed "system prompts" (`system_prompt_tokens` long) — real deployments
share such prefixes, and the prefix cache is there to exploit them — followed by text drawn
deterministically from the model's corpus.
"""

from __future__ import annotations

import csv
import itertools
import random
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer


@dataclass(frozen=True)
class Phase:
    name: str
    duration_seconds: float
    rate_per_s: dict[str, float]


@dataclass(frozen=True)
class WorkloadConfig:
    trace: Path
    phases: tuple[Phase, ...]
    input_scale: float = 0.25
    output_scale: float = 0.1
    min_input: int = 24
    max_input: int = 768
    min_output: int = 4
    max_output: int = 32
    chat_max_input: int = 256
    long_min_input: int = 0
    burstiness: float = 0.5
    num_system_prompts: int = 4
    system_prompt_tokens: int = 48
    seed: int = 0


@dataclass(frozen=True)
class ScheduledRequest:
    index: int
    at_seconds: float
    phase: str
    request_class: str
    prompt: str
    input_tokens: int
    max_tokens: int


def read_trace(path: Path, limit: int = 20000) -> list[tuple[float, int, int]]:
    """(seconds since the first request, prompt tokens, output tokens) of the first `limit` rows."""
    from datetime import datetime

    rows: list[tuple[float, int, int]] = []
    with path.open() as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= limit:
                break
            t = datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp()
            rows.append((t, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
    start = rows[0][0] if rows else 0.0
    return [(t - start, a, b) for t, a, b in rows]


class PromptMaker:
    """Deterministic prompts of a given token count from the model's tokenizer and a corpus."""

    def __init__(self, tokenizer_path: Path, corpus: str, config: WorkloadConfig) -> None:
        self._tok = Tokenizer.from_file(str(tokenizer_path))
        self._corpus_ids = self._tok.encode(corpus).ids
        rng = random.Random(config.seed)
        self._systems = [self._slice(rng, config.system_prompt_tokens)
                         for _ in range(config.num_system_prompts)]
        self._rng = rng

    def _slice(self, rng: random.Random, n: int) -> list[int]:
        ids = self._corpus_ids
        start = rng.randrange(0, max(1, len(ids) - n))
        out = ids[start:start + n]
        while len(out) < n:
            out += ids[: n - len(out)]
        return out

    def make(self, index: int, num_tokens: int) -> str:
        system = self._systems[index % len(self._systems)]
        body = self._slice(self._rng, max(1, num_tokens - len(system)))
        return str(self._tok.decode(system + body))


def class_lengths(config: WorkloadConfig,
                  trace: list[tuple[float, int, int]] | None = None) -> dict[str, list[tuple[int, int]]]:
    """(prompt tokens, output tokens) of the trace's requests per class, scaled and clipped."""
    by_class: dict[str, list[tuple[int, int]]] = {"chat": [], "long": []}
    for _, inp, out in read_trace(config.trace) if trace is None else trace:
        n_in = min(max(round(inp * config.input_scale), config.min_input), config.max_input)
        n_out = min(max(round(out * config.output_scale), config.min_output), config.max_output)
        if n_in <= config.chat_max_input:
            by_class["chat"].append((n_in, n_out))
        else:
            by_class["long"].append((max(n_in, config.long_min_input), n_out))
    return by_class


def build_schedule(config: WorkloadConfig, prompts: PromptMaker) -> list[ScheduledRequest]:
    """Every request of every phase, sorted by send time (seconds from the start)."""
    trace = read_trace(config.trace)
    gaps = [max(b[0] - a[0], 0.0) for a, b in itertools.pairwise(trace)]
    by_class = class_lengths(config, trace)
    cursor = {c: 0 for c in by_class}
    gap_cursor = 0
    items: list[tuple[float, str, str, int, int]] = []
    phase_start = 0.0
    for phase in config.phases:
        for cls, rate in phase.rate_per_s.items():
            n = round(rate * phase.duration_seconds)
            if n <= 0:
                continue
            window = [gaps[(gap_cursor + i) % len(gaps)] for i in range(n + 1)] if gaps else [1.0] * (n + 1)
            gap_cursor += n + 1
            mean = sum(window) / len(window)
            window = [(1 - config.burstiness) * mean + config.burstiness * g for g in window]
            scale = phase.duration_seconds / (sum(window) or 1.0)
            t = phase_start
            for gap in window[:n]:
                t += gap * scale
                n_in, n_out = by_class[cls][cursor[cls] % len(by_class[cls])]
                cursor[cls] += 1
                items.append((t, phase.name, cls, n_in, n_out))
        phase_start += phase.duration_seconds
    items.sort()
    return [ScheduledRequest(i, t, ph, cls, prompts.make(i, n_in), n_in, n_out)
            for i, (t, ph, cls, n_in, n_out) in enumerate(items)]
