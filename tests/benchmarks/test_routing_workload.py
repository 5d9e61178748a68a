"""bench routing's workload: the window rule, the oracle, and text prompts that tokenize to exactly the
trace's block structure (real tokenizer of a generated model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from benchmarks._routing_misses import miss_causes
from benchmarks._routing_workload import (
    TOKENS_PER_BLOCK,
    TraceRequest,
    Window,
    build_requests,
    evenly_spaced,
    oracle_blocks,
    oracle_share,
    read_trace,
    single_token_words,
)
from benchmarks.routing import choose_windows, main, targets_for


def write_trace(path: Path, rows: list[tuple[int, list[int]]]) -> Path:
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": 512 * len(ids), "output_length": 64,
                                        "hash_ids": ids}) + "\n" for t, ids in rows))
    return path


def test_evenly_spaced_windows_are_fixed_by_the_rule() -> None:
    assert evenly_spaced(3993, 3, 160) == [Window(0, 160), Window(1331, 160), Window(2662, 160)]
    assert evenly_spaced(10, 3, 8) == [Window(0, 8), Window(3, 7), Window(6, 4)]  # cut at the trace's end
    with pytest.raises(ValueError, match="windows must be >= 1"):
        evenly_spaced(10, 0, 8)


def test_oracle_counts_leading_blocks_seen_as_a_prefix_earlier() -> None:
    assert oracle_blocks([(1, 2, 3), (1, 2, 4), (5,), (1, 2, 3, 6), (2, 3)]) == [0, 2, 0, 3, 0]


def test_prompts_tokenize_to_the_trace_blocks(tmp_path: Path, tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    words = single_token_words(tokenizer)
    trace = [(0, [1, 2, 3]), (500, [1, 2, 4]), (1500, [1, 2, 3])]
    rows = read_trace(write_trace(tmp_path / "t.jsonl", trace))
    requests = build_requests(rows, Window(0, 3), words=words, salt=7, max_blocks=32, time_scale=0.5)
    ids = [tokenizer.encode(r.prompt).ids for r in requests]
    assert [len(i) for i in ids] == [r.prompt_tokens for r in requests] == [49, 49, 49]
    block = TOKENS_PER_BLOCK
    assert ids[0][:1 + 2 * block] == ids[1][:1 + 2 * block] and ids[0][1 + 2 * block] != ids[1][1 + 2 * block]
    assert ids[2] == ids[0]
    # the third prompt is seen whole: BOS + 48 tokens leave the last token to compute, all 3 blocks hit
    assert [r.oracle_tokens for r in requests] == [0, 2 * block, 3 * block]
    assert oracle_share(requests) == pytest.approx(5 * block / (3 * 49))
    assert [r.arrival_s for r in requests] == [0.0, 0.25, 0.75]
    assert [r.max_tokens for r in requests] == [2, 2, 2]
    assert [r.block_ids for r in requests] == [(1, 2, 3), (1, 2, 4), (1, 2, 3)]
    no_bos = build_requests(rows, Window(0, 3), words=words, salt=7, max_blocks=32, time_scale=0.5,
                            bos_tokens=0)
    assert [r.oracle_tokens for r in no_bos] == [0, 2 * block, 2 * block]  # 48 tokens: last block computes
    other = build_requests(rows, Window(0, 3), words=words, salt=8, max_blocks=32, time_scale=0.5)
    assert other[0].prompt != requests[0].prompt  # a new salt: fresh blocks, same structure
    assert [r.oracle_tokens for r in other] == [r.oracle_tokens for r in requests]


def test_missed_oracle_tokens_split_by_whether_the_holder_had_its_first_token() -> None:
    def request(arrival: float, oracle_blocks: int, blocks: tuple[int, ...]) -> TraceRequest:
        return TraceRequest(arrival, "", 1 + 16 * len(blocks), 16 * oracle_blocks, 1, blocks)

    def result(ttft: float | None, cached: int, error: str | None = None) -> dict[str, object]:
        return {"ttft": ttft, "cached_tokens": cached, "error": error}

    requests = [request(0.0, 0, (1, 2, 3)),     # holder of (1, 2, 3): first token at 1.0
                request(2.0, 3, (1, 2, 3, 5)),  # all 3 blocks ready, 1 served: 32 lost with the holder ready
                request(0.5, 2, (1, 2, 4)),     # holder still prefilling: 32 lost in flight; first token 3.5
                request(2.0, 3, (1, 2, 4, 6)),  # 2 blocks ready, (1, 2, 4) in flight; all 48 served anyway
                request(2.5, 1, (1, 9)),        # failed: not counted, makes nothing ready
                request(3.0, 2, (1, 9, 7))]     # (1) ready, (1, 9) only from the failed request: 16 in flight
    results = [result(1.0, 0), result(0.2, 16), result(3.0, 0), result(0.1, 48), result(None, 0, "HTTP 503"),
               result(0.1, 16)]
    assert miss_causes(requests, results) == {"holder_ready": 32, "holder_in_flight": 48}
    with pytest.raises(ValueError, match="one per request"):
        miss_causes(requests, results[:2])


def test_lengths_are_clamped_and_an_empty_window_is_an_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    words = single_token_words(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")))
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"timestamp": 0, "input_length": 0, "output_length": out,
                                        "hash_ids": list(range(40))}) + "\n" for out in (5, 100, 9000)))
    requests = build_requests(read_trace(path), Window(0, 3), words=words, salt=1, max_blocks=32,
                              time_scale=1.0)
    assert [r.max_tokens for r in requests] == [1, 3, 32]
    assert [r.prompt_tokens for r in requests] == [1 + 32 * TOKENS_PER_BLOCK] * 3  # at most 32 blocks
    with pytest.raises(ValueError, match=r"no requests in \[5, 15\)"):
        build_requests(read_trace(path), Window(5, 10), words=words, salt=1, max_blocks=32, time_scale=1.0)


def test_bad_trace_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "output_length": 1, "hash_ids": [1]}\n{"timestamp": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a Mooncake trace row"):
        read_trace(path)


def test_windows_by_hand_and_by_rule(tmp_path: Path) -> None:
    by_hand = main_args(start=5, requests=20)
    assert choose_windows(12, by_hand) == [Window(5, 7)]
    by_rule = main_args(start=None, requests=None, windows=2)
    assert choose_windows(12, by_rule) == [Window(0, 12), Window(6, 6)]
    with pytest.raises(ValueError, match="--start"):
        choose_windows(12, main_args(start=12, requests=3))


def test_ttft_targets_apply_only_with_an_eligible_window() -> None:
    assert list(targets_for({"ttft_windows_eligible": 0})) == ["cache_efficiency_min"]
    assert list(targets_for({"ttft_windows_eligible": 2})) == [
        "cache_efficiency_min", "ttft_mean_ratio_vs_rr", "ttft_mean_ratio_vs_vllm_router"]


def test_bad_flags_exit_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--rounds", "0"])
    assert caught.value.code == 2 and "--rounds: must be >= 1" in capsys.readouterr().err


def main_args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"windows": 3, **values})
