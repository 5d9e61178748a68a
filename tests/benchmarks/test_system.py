"""bench system: the window and time-scale rules, the SLOs it reads, goodput on measured numbers, and
the peer stack (vLLM OpenAI servers behind vllm-router cache_aware) as real processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from benchmarks._goodput import SLO, goodput, is_good, ratio
from benchmarks._replay import replay
from benchmarks._routing_systems import VLLM_ROUTER
from benchmarks._routing_workload import (
    TraceRequest,
    Window,
    build_requests,
    evenly_spaced,
    read_trace,
    single_token_words,
)
from benchmarks.system import default_slo, parse, span, stack_figures


def request(ttft: float | None, tpot: float | None, error: str | None = None) -> dict[str, object]:
    return {"ttft": ttft, "tpot": tpot, "error": error, "prompt_tokens": 273, "cached_tokens": 0,
            "worker": None, "completion_tokens": 8}


# Per-request (TTFT, TPOT) in seconds as `bench system --quick --preset tiny` measured them on this
# machine (heteroserve_native, 2 workers), plus the cases at the SLO's edges.
MEASURED = [request(0.0951, 0.00185), request(0.4241, 0.00194), request(0.0843, 0.00181)]


def test_goodput_counts_requests_meeting_both_slos_over_the_arrival_span() -> None:
    slo = SLO(ttft_s=1.0, tpot_s=0.1)
    late = request(1.0001, 0.002)  # TTFT just over
    slow = request(0.2, 0.1001)  # TPOT just over
    one_token = request(0.5, None)  # no TPOT: judged by TTFT alone
    failed = request(0.1, 0.002, error="HTTP 503")
    edge = request(1.0, 0.1)  # on the bound: met
    results = [*MEASURED, late, slow, one_token, failed, edge]
    assert [is_good(r, slo) for r in results] == [True, True, True, False, False, True, False, True]
    figures = goodput(results, span_s=2.5, slo=slo)
    assert figures["good"] == 5 and figures["requests"] == 8
    assert figures["goodput_rps"] == pytest.approx(2.0)
    assert figures["slo_attainment"] == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match="span_s: must be > 0"):
        goodput(results, span_s=0.0, slo=slo)


def test_stack_figures_sum_good_requests_over_windows_and_spans() -> None:
    slo = SLO(1.0, 0.1)
    windows = [MEASURED, [request(2.5, 0.01), request(0.3, 0.05)]]
    figures = stack_figures(windows, [3.0, 1.0], slo)
    assert figures["good"] == 4 and figures["requests"] == 5
    assert figures["goodput_rps"] == pytest.approx(1.0)  # 4 good / (3 + 1) s
    assert figures["goodput_rps_per_window"] == [1.0, 1.0]
    assert figures["ttft_p99_s"] == pytest.approx(2.4, abs=0.1)
    assert ratio(figures["goodput_rps"], 0.8) == pytest.approx(1.25)
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None


def test_slo_is_the_shipped_interactive_class_and_validated() -> None:
    assert default_slo() == SLO(1.0, 0.1)
    with pytest.raises(ValueError, match="tpot_s: must be > 0"):
        SLO(1.0, 0.0)


def test_window_and_time_scale_rules_are_fixed_before_measuring(shared_data: Path) -> None:
    args = parse([])
    assert (args.windows, args.requests, args.engines) == (3, 80, 2)
    assert args.time_scale == pytest.approx(1.6)  # 0.8 × 4 workers of bench routing / 2 engines
    assert parse(["--engines", "4"]).time_scale == pytest.approx(0.8)
    quick = parse(["--quick"])
    assert (quick.windows, quick.requests) == (1, 12)
    assert parse(["--quick", "--requests", "5"]).requests == 5  # a typed flag wins
    with pytest.raises(SystemExit):
        parse(["--engines", "0"])
    rows = read_trace(shared_data / "traces" / "mooncake_synthetic_trace.jsonl")
    assert evenly_spaced(len(rows), 3, 80) == [Window(0, 80), Window(1331, 80), Window(2662, 80)]


def test_span_is_first_to_last_arrival(tiny_model_dir: Path, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 1, "output_length": 64, "hash_ids": [1]}\n'
                     '{"timestamp": 2500, "input_length": 1, "output_length": 64, "hash_ids": [1, 2]}\n')
    words = single_token_words(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")))
    requests = build_requests(read_trace(trace), Window(0, 2), words=words, salt=1, max_blocks=32,
                              time_scale=1.6)
    assert span(requests) == pytest.approx(4.0)
    assert span(requests[:1]) == 1.0  # one arrival: at least a second


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.skipif(not shutil.which(VLLM_ROUTER), reason="vllm-router is not installed (dev extra)")
def test_vllm_router_stack_serves_streams_with_cached_counts(tmp_path: Path, tiny_model_dir: Path) -> None:
    """One vLLM OpenAI server (the peer's exact argv) behind vllm-router cache_aware: every streamed
    request completes with usage, and a repeated prompt is served from vLLM's prefix cache."""
    from benchmarks._system_stacks import start_vllm_stack

    words = single_token_words(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")))
    prompt = " ".join(words[:96])
    requests = [TraceRequest(0.0, prompt, 97, 0, 4), TraceRequest(3.0, prompt, 97, 64, 4)]
    system = start_vllm_stack(tiny_model_dir, tmp_path, engines=1)
    try:
        summary = replay(system, requests)
    finally:
        system.cluster.stop()
    assert summary["errors"] == 0, summary["first_error"]
    assert summary["tpot_p50_s"] is not None and summary["tpot_p50_s"] > 0
    assert summary["cached_share"] > 0.3  # the second request's 64 leading tokens (two 32-token pages)
    assert "cache_aware" in system.settings["router"]


def test_routing_engine_vllm_and_quick_settings() -> None:
    from benchmarks.routing import parse_args

    vllm = parse_args(["--engine", "vllm"])
    assert (vllm.workers, vllm.windows, vllm.requests, vllm.rounds) == (2, 3, 80, 1)
    assert vllm.time_scale == pytest.approx(1.6) and vllm.policies == ["round_robin", "prefix_aware"]
    assert vllm.peers == ["cache_aware"]
    quick = parse_args(["--engine", "vllm", "--quick"])
    assert (quick.windows, quick.requests, quick.rounds, quick.workers) == (1, 16, 1, 2)
    native = parse_args([])
    assert (native.workers, native.requests, native.rounds, native.time_scale) == (4, 160, 2, 0.8)
    assert parse_args(["--engine", "vllm", "--workers", "3"]).workers == 3  # typed flags win
    with pytest.raises(SystemExit):
        parse_args(["--engine", "vllm", "--long-horizon"])
