"""`bench routing`'s trace replay: the block → token mapping keeps the trace's prefix sharing, lengths are
clamped as documented, and the interleaving slices keep every request once, rebased per slice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.routing import TOKENS_PER_BLOCK, TraceRequest, load_requests, slices


def write_trace(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_equal_block_ids_give_equal_tokens_and_lengths_are_clamped(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", [
        {"timestamp": 1000, "input_length": 1024, "output_length": 5, "hash_ids": [7, 8]},
        {"timestamp": 1500, "input_length": 1536, "output_length": 9000, "hash_ids": [7, 8, 9]},
        {"timestamp": 3000, "input_length": 512, "output_length": 100, "hash_ids": [9]},
    ])
    a, b, c = load_requests(trace, 0, 10, max_blocks=32, time_scale=2.0, vocab_size=2048)
    assert len(a.prompt) == 2 * TOKENS_PER_BLOCK and b.prompt[: len(a.prompt)] == a.prompt
    assert c.prompt == b.prompt[2 * TOKENS_PER_BLOCK:]  # block 9 is the same wherever it appears
    assert all(4 <= t < 2048 for t in b.prompt)
    assert (a.max_tokens, b.max_tokens, c.max_tokens) == (1, 32, 3)
    assert (a.arrival_s, b.arrival_s, c.arrival_s) == (0.0, 1.0, 4.0)
    again = load_requests(trace, 1, 1, max_blocks=1, time_scale=1.0, vocab_size=2048)
    assert again[0].prompt == a.prompt[:TOKENS_PER_BLOCK] and again[0].arrival_s == 0.0


def test_an_empty_window_is_an_error_naming_the_file(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", [{"timestamp": 0, "input_length": 1, "output_length": 1,
                                                "hash_ids": [1]}])
    with pytest.raises(ValueError, match=r"t\.jsonl: no requests in \[5, 15\)"):
        load_requests(trace, 5, 10, max_blocks=4, time_scale=1.0, vocab_size=100)


@pytest.mark.parametrize("count, rounds", [(160, 8), (10, 3), (5, 8), (7, 1)])
def test_slices_keep_every_request_once_rebased(count: int, rounds: int) -> None:
    requests = [TraceRequest(0.5 * i, (i,), 1) for i in range(count)]
    parts = slices(requests, rounds)
    assert len(parts) <= rounds
    assert [r.prompt for part in parts for r in part] == [r.prompt for r in requests]
    for part in parts:
        assert part[0].arrival_s == 0.0
        assert [r.arrival_s for r in part] == sorted(r.arrival_s for r in part)
