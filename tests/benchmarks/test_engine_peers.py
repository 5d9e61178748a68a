"""`bench engine`'s peers: the shared workload, HF's one-batch run, the vLLM child, the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._report import check
from benchmarks._vllm_peer import VLLMSpec, child_env, cpu_set, run_vllm
from benchmarks.engine import (
    FULL,
    TARGETS,
    agreement,
    engine_config,
    make_requests,
    run_engine,
    run_hf,
    single_requests,
    summarize,
)
from workers.engine.engine import LLMEngine

TINY_VOCAB = 2048


def test_workload_is_deterministic_and_spans_its_ranges() -> None:
    requests = make_requests(FULL, TINY_VOCAB)
    assert requests == make_requests(FULL, TINY_VOCAB)
    assert len(requests) == 32
    assert sorted(len(p) for p, _ in requests)[0] == 32 and max(len(p) for p, _ in requests) == 512
    assert min(o for _, o in requests) == 16 and max(o for _, o in requests) == 256
    assert all(p[0] == 1 and min(p[1:]) >= 4 and max(p) < TINY_VOCAB for p, _ in requests)
    singles = single_requests(TINY_VOCAB)
    assert singles == single_requests(TINY_VOCAB)
    assert len({tuple(p) for p, _ in singles}) == 3, "each repetition needs a new prompt (no cache hit)"


def test_agreement_is_the_share_of_identical_requests() -> None:
    assert agreement([[1, 2], [3], [4]], [[1, 2], [3, 0], [4]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="theirs"):
        agreement([[1]], [[1], [2]])


def test_hf_one_left_padded_batch_gives_the_engines_greedy_tokens(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    requests = [(p[:n], out) for (p, _), n, out in zip(make_requests(FULL, TINY_VOCAB), (40, 90, 17),
                                                         (12, 5, 9), strict=False)]
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    theirs = run_hf(hf, requests)
    ours = run_engine(LLMEngine(engine_config(tiny_model_dir)), requests)
    assert [len(t) for t in theirs["tokens"]] == [12, 5, 9] == [len(t) for t in ours["tokens"]]
    assert theirs["count"] == ours["count"] == 26
    assert agreement(ours["tokens"], theirs["tokens"]) == 1.0


def test_vllm_spec_and_cores_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="threads"):
        VLLMSpec("m", 0, [([1], 1)], [])
    with pytest.raises(ValueError, match="batched"):
        VLLMSpec("m", 1, [], [])
    with pytest.raises(ValueError, match="threads"):
        cpu_set(10_000)
    env = child_env(1)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == str(cpu_set(1)[0])
    assert "VLLM_CPU_KVCACHE_SPACE" not in env


def _ours(tokens: list[list[int]]) -> dict[str, object]:
    run = {"count": 300, "wall_s": 1.0, "cpu_s": 1.0, "ttft_p50_s": 0.2, "tpot_p50_s": 0.01, "tokens": tokens}
    hf = {"count": 300, "wall_s": 3.0, "cpu_s": 3.0, "tokens": tokens}
    return {"engine": run, "hf": hf, "engine1_s": 0.5, "engine1_cpu_s": 0.5, "hf1_s": 0.6,
            "prefix_hot_s": 0.01, "prefix_cold_s": 0.1}


def test_summarize_computes_each_ratio_in_the_stated_direction() -> None:
    tokens = [[5] * 100, [6] * 200]
    batched = {"wall_s": 1.5, "cpu_s": 2.0, "ttft_s": [0.1, 0.3, 0.5], "tokens": [[5] * 100, [7] * 200]}
    vllm = {"batched": batched,
            "single_walls_s": [0.45, 0.4], "single_cpu_s": [0.6, 0.7], "start_s": 50.0, "settings": {}}
    result = summarize(FULL, _ours(tokens), vllm)
    assert result["throughput_ratio_vs_hf"] == pytest.approx(3.0)
    assert result["throughput_ratio_vs_vllm"] == pytest.approx(300 / (300 / 1.5))
    assert result["batch1_ratio_vs_vllm"] == pytest.approx(0.4 / 0.5)
    assert result["ttft_p50_ratio_vs_vllm"] == pytest.approx(0.2 / 0.3)
    assert result["prefix_hit_ttft_ratio"] == pytest.approx(0.1)
    assert result["throughput_ratio_vs_vllm_cpu"] == pytest.approx(2.0)
    assert result["batch1_ratio_vs_vllm_cpu"] == pytest.approx(0.6 / 0.5)
    assert result["token_agreement_vs_vllm"] == 0.5 and result["token_agreement_vs_hf"] == 1.0
    verdicts = {v.name: v.ok for v in check(result, TARGETS)}
    assert verdicts == {"throughput_ratio_vs_hf": True, "throughput_ratio_vs_vllm": True,
                        "batch1_ratio_vs_vllm": False, "ttft_p50_ratio_vs_vllm": True,
                        "prefix_hit_ttft_ratio": True}


def test_without_vllm_its_targets_are_missed_not_passed() -> None:
    result = summarize(FULL, _ours([[1]]), None)
    missed = {v.name for v in check(result, TARGETS) if not v.ok}
    assert missed == {"throughput_ratio_vs_vllm", "batch1_ratio_vs_vllm", "ttft_p50_ratio_vs_vllm"}


@pytest.mark.slow
def test_vllm_child_runs_the_same_requests_greedily_and_exits(tiny_model_dir: Path) -> None:
    pytest.importorskip("vllm")
    requests = [(p[:n], out) for (p, _), n, out in zip(make_requests(FULL, TINY_VOCAB), (40, 90), (12, 5),
                                                         strict=False)]
    result = run_vllm(VLLMSpec(str(tiny_model_dir), 1, requests, [requests[0]], repeats=1))
    ours = run_engine(LLMEngine(engine_config(tiny_model_dir)), requests)
    assert [len(t) for t in result["batched"]["tokens"]] == [12, 5]
    assert agreement(ours["tokens"], result["batched"]["tokens"]) == 1.0
    assert len(result["batched"]["ttft_s"]) == 2 and len(result["single_walls_s"]) == 1
    assert result["batched"]["cpu_s"] > 0, "the CPU time of vLLM's process tree is measured"
    assert result["settings"]["dtype"] == "torch.float32"
    assert result["settings"]["omp_threads_bind"] == str(cpu_set(1)[0])
