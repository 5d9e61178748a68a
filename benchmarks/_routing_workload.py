"""The routing benchmark's workload: Mooncake-format trace windows, replayed as text prompts, and the
oracle share of each window.

Trace: JSONL rows with `timestamp` (ms), `input_length`, `output_length`, `hash_ids` (one id per 512-token
block; equal ids mean equal prompt blocks *and* equal prefixes, as in Mooncake's traces).

Windows are chosen by a rule fixed before measuring (`evenly_spaced`): the trace of N requests is cut
into k equal parts and window i is the `size` requests from the first request of part i, i.e. it starts
at floor(i·N/k). No window is ever picked by looking at its results; `--start` picks one by hand.

Prompts: each block id becomes 16 words drawn (numpy generator seeded by the id and the replay's salt)
from the model's single-token words (vocabulary entries `Ġword` that the tokenizer gives back as one
token, alone or in a run), joined with spaces. A prompt of n blocks is therefore exactly
BOS + 16·n tokens with the trace's prefix structure on 16-token blocks, and it is *text*, so every
router sees the same request: our gateway tokenizes it, vllm-router's `cache_aware` matches it as text.
The salt makes each (window, round) replay use fresh blocks, so nothing cached in an earlier replay
helps a later one and the clusters need no restart between replays.

Oracle: a request's oracle blocks are its leading blocks whose prefix already occurred earlier in the
window (the most any router could serve from cache, with unbounded caches and instant prefills);
oracle share = Σ 16·oracle blocks / Σ prompt tokens, the same ratio as the measured cached share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TOKENS_PER_BLOCK = 16
MAX_OUTPUT_TOKENS = 32
OUTPUT_DIVISOR = 32  # trace output lengths are scaled down by this (clamped to 1..MAX_OUTPUT_TOKENS)


@dataclass(frozen=True)
class TraceRow:
    timestamp_ms: float
    output_length: int
    hash_ids: tuple[int, ...]


@dataclass(frozen=True)
class Window:
    """Requests [start, start + size) of the trace."""

    start: int
    size: int


@dataclass(frozen=True)
class TraceRequest:
    """One request to replay: arrival (s from the window's start), text prompt, its token count, the
    oracle's cacheable tokens, max tokens (EOS ignored), and the trace block ids its prompt is made of."""

    arrival_s: float
    prompt: str
    prompt_tokens: int
    oracle_tokens: int
    max_tokens: int
    block_ids: tuple[int, ...] = ()


def read_trace(path: Path) -> list[TraceRow]:
    """All rows of a Mooncake-format JSONL trace; raises ValueError naming the line and field."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        data = json.loads(line)
        try:
            rows.append(TraceRow(float(data["timestamp"]), int(data["output_length"]),
                                 tuple(int(h) for h in data["hash_ids"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a Mooncake trace row ({exc!r})") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def evenly_spaced(num_rows: int, k: int, size: int) -> list[Window]:
    """The fixed rule: window i of k starts at floor(i·num_rows/k) and holds `size` requests (fewer
    where the trace ends first)."""
    if k < 1 or size < 1:
        raise ValueError(f"windows must be >= 1 and size >= 1, got {k} and {size}")
    starts = sorted({i * num_rows // k for i in range(k)})
    return [Window(s, min(size, num_rows - s)) for s in starts]


def single_token_words(tokenizer: Tokenizer) -> list[str]:
    """Lower-case ASCII words that the tokenizer encodes as one token after a space, sorted."""
    base = len(tokenizer.encode("").ids)
    words = []
    for piece, token_id in tokenizer.get_vocab().items():
        word = piece[1:]
        if piece.startswith("Ġ") and word.isascii() and word.isalpha() and word.islower():
            ids = tokenizer.encode(" " + word).ids
            if len(ids) == base + 1 and ids[-1] == token_id:
                words.append(word)
    if len(words) < 256:
        raise ValueError(f"the tokenizer has only {len(words)} single-token words; need >= 256")
    return sorted(words)


def oracle_blocks(windows_rows: list[tuple[int, ...]]) -> list[int]:
    """Per request (in arrival order), how many leading blocks were already seen as a prefix earlier."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for blocks in windows_rows:
        hit = 0
        while hit < len(blocks) and blocks[:hit + 1] in seen:
            hit += 1
        out.append(hit)
        seen.update(blocks[:i] for i in range(1, len(blocks) + 1))
    return out


def build_requests(rows: list[TraceRow], window: Window, *, words: list[str], salt: int, max_blocks: int,
                   time_scale: float, bos_tokens: int = 1) -> list[TraceRequest]:
    """The window's requests as text prompts (see the module docstring); arrivals = (timestamp −
    the window's first timestamp) × `time_scale`."""
    part = rows[window.start:window.start + window.size]
    if not part:
        raise ValueError(f"no requests in [{window.start}, {window.start + window.size})")
    blocks = [r.hash_ids[:max_blocks] for r in part]
    oracle = oracle_blocks(blocks)
    texts: dict[int, str] = {}
    t0 = part[0].timestamp_ms
    out = []
    for row, ids, hits in zip(part, blocks, oracle, strict=True):
        for block_id in ids:
            if block_id not in texts:
                picks = np.random.default_rng([salt, block_id]).integers(0, len(words), TOKENS_PER_BLOCK)
                texts[block_id] = "".join(" " + words[i] for i in picks)
        max_tokens = int(min(MAX_OUTPUT_TOKENS, max(1, round(row.output_length / OUTPUT_DIVISOR))))
        prompt_tokens = bos_tokens + TOKENS_PER_BLOCK * len(ids)
        # An engine computes at least the prompt's last token, so a whole-prompt hit keeps one block less.
        cacheable = TOKENS_PER_BLOCK * min(hits, (prompt_tokens - 1) // TOKENS_PER_BLOCK)
        out.append(TraceRequest((row.timestamp_ms - t0) / 1000.0 * time_scale, "".join(texts[b] for b in ids),
                                prompt_tokens, cacheable, max_tokens, ids))
    return out


def oracle_share(requests: list[TraceRequest]) -> float:
    return sum(r.oracle_tokens for r in requests) / max(1, sum(r.prompt_tokens for r in requests))
