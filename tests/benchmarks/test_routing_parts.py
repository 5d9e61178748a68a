"""bench routing's TTFT decomposition (benchmarks/_routing_parts.py): the cold rows share nothing, the
line through idle TTFTs, its application to round robin's replay, and both passes on a real gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from benchmarks._routing_parts import cold_rows, decompose, fit, measure
from benchmarks._routing_systems import System, start_ours
from benchmarks._routing_workload import TraceRow, oracle_blocks, single_token_words
from benchmarks.routing import parse_args, summarize


def test_cold_rows_keep_lengths_and_share_no_block() -> None:
    rows = [TraceRow(float(t), 64, ids) for t, ids in
            enumerate([(1, 2, 3), (1, 2), (1, 2, 3, 4), (5,), (1, 2, 3)])]
    cold = cold_rows(rows, stride=2)
    assert [len(r.hash_ids) for r in cold] == [3, 4, 3]
    assert [r.timestamp_ms for r in cold] == [0.0, 2.0, 4.0]
    assert oracle_blocks([r.hash_ids for r in cold]) == [0, 0, 0]  # no prefix repeats
    assert len({h for r in cold for h in r.hash_ids}) == 10


def test_fit_recovers_a_line() -> None:
    samples = [{"ttft": 0.010 + 2e-5 * (p - c), "prompt_tokens": p, "cached_tokens": c}
               for p, c in [(100, 0), (300, 0), (300, 256), (500, 96), (17, 0)]]
    fixed, per_token = fit(samples)
    assert fixed == pytest.approx(0.010)
    assert per_token == pytest.approx(2e-5)


def test_decompose_splits_round_robins_ttft() -> None:
    parts = {"fixed_ms": 10.0, "per_computed_token_us": 20.0}
    out = decompose(parts, mean_prompt_tokens=300.0, oracle_share=0.6, rr_cached_share=0.3,
                    rr_ttft_mean_s=0.02)
    assert out["rr_computed_tokens_mean"] == 210.0 and out["oracle_computed_tokens_mean"] == 120.0
    assert out["rr_prefill_ms"] == pytest.approx(4.2)  # 210 tokens at 20 us
    assert out["removable_by_cache_ms"] == pytest.approx(1.8)  # (210 - 120) tokens
    assert out["removable_share_of_rr_ttft"] == pytest.approx(0.09)
    assert out["removable_share_of_idle_rr_ttft"] == pytest.approx(1.8 / 14.2, abs=1e-4)
    assert out["ratio_vs_rr_bound_same_queueing"] == pytest.approx(0.91)


def test_both_passes_on_our_gateway(tmp_path: Path, tiny_model_dir: Path) -> None:
    # two conversations: the warm pass reuses their earlier turns, the cold pass nothing
    rows = [TraceRow(float(i), 32, ids) for i, ids in
            enumerate([(1, 2), (3,), (1, 2, 4), (3, 5), (1, 2, 4, 6), (3, 5, 7)])]
    words = single_token_words(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")))
    system = start_ours("prefix_aware", tiny_model_dir, tmp_path, 2)
    try:
        parts = measure(system, rows, words=words, salt=7, max_blocks=32)
    finally:
        system.cluster.stop()
    assert (parts["requests_cold"], parts["requests_warm"]) == (3, 6)
    # warm: 2 + 1 + 3 + 2 cached blocks of 16 tokens, of 15 blocks + 6 BOS tokens
    assert parts["idle_cached_share_warm"] == pytest.approx(16 * 8 / (16 * 15 + 6), abs=1e-4)
    assert parts["idle_ttft_mean_cold_ms"] > 0 and parts["idle_ttft_mean_warm_ms"] > 0


def _system(name: str, ttft: float, cached: float, settings: dict[str, object]) -> System:
    replay = {"cached_share": cached, "ttft_mean_s": ttft, "ttft_p50_s": ttft, "ttft_p99_s": ttft,
              "wall_s": 1.0, "requests_per_worker": [1], "errors": 0, "first_error": None,
              "missed_oracle_tokens": {}}
    return System(name, None, "", {}, "tiny", settings, {(0, 0): replay})  # type: ignore[arg-type]


def test_summary_applies_the_parts_to_round_robins_replay() -> None:
    parts = {"fixed_ms": 10.0, "per_computed_token_us": 20.0}
    systems = [_system("round_robin", 0.02, 0.3, {}),
               _system("prefix_aware", 0.018, 0.6, {"ttft_parts": parts})]
    plan = [{"window": 0, "round": 0, "start": 0, "requests": 9, "oracle_share": 0.6,
             "mean_prompt_tokens": 300.0}]
    result, skipped = summarize(plan, systems)
    assert not skipped and "ttft_parts" not in systems[1].settings  # moved to the result, not the settings
    assert result["ttft_parts"]["removable_share_of_rr_ttft"] == pytest.approx(0.09)
    assert result["ttft_mean_ratio_vs_rr"] == pytest.approx(0.9)


def test_gateway_args_reach_the_run_settings() -> None:
    args = parse_args(["--long-horizon", "--ttft-parts", "--gateway-arg=--load-signal=reported"])
    assert args.gateway_arg == ["--load-signal=reported"] and args.ttft_parts and args.preset == "tiny"
