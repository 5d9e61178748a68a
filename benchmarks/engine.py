"""`heteroserve bench engine`: our engine vs vLLM (CPU build) and Hugging Face `generate`, same machine.

Workload (full run): the `bench` preset model (~31M parameters, float32, CPU); 32 requests with prompt
lengths spread evenly over 32-512 tokens and output lengths over 16-256 (shuffled with a fixed seed),
greedy, EOS ignored so every side produces exactly those lengths. The same token ids go to every side.
- ours: all 32 at once (continuous batching, chunked prefill, budget 512 tokens/step, 1 GiB of KV);
- vLLM: all 32 at once through its `LLMEngine` in a child process tree (benchmarks/_vllm_peer.py), at
  its own CPU defaults (max_num_batched_tokens 2048, max_num_seqs 128, chunked prefill, prefix caching,
  torch.compile/inductor; Intel OpenMP preloaded) with dtype float32 and 1 GiB of KV;
- HF: `generate` on ONE batch of all 32, left-padded with an attention mask, max_new_tokens =
  min_new_tokens = the longest output; only the requested tokens of each row count as output.

Reported (targets in brackets):
- throughput_ratio_vs_vllm = our output tokens/s / vLLM's, batched run  [>= 1.0]
- batch1_ratio_vs_vllm = vLLM wall time / ours for one request alone (prompt 256, output 128)  [>= 1.0]
- ttft_p50_ratio_vs_vllm = our median TTFT / vLLM's, batched run  [<= 1.0]
- throughput_ratio_vs_hf = our output tokens/s / HF's (equal batch: all 32)  [>= 2.0]
- prefix_hit_ttft_ratio = TTFT of a repeated 1,024-token prompt / TTFT of its first run  [<= 0.2]
- token_agreement_vs_vllm / _vs_hf: share of requests whose greedy tokens equal ours exactly;
- batch1_ratio_vs_hf, tokens/s, TTFT/TPOT p50 of each side, vLLM's settings and start time.
Both in-process sides run the batched workload twice, interleaved, single-request and prefix figures three
times; vLLM runs the batched workload twice and the same three single prompts. Each side keeps its best
run (on a shared machine other tenants only ever add time). No repetition hits a prefix cache: a fresh
engine per batched run on our side, vLLM's prefix cache reset, a new prompt per single-request run.
Threads: `--threads N` (default 1) confines this process and vLLM's process tree to the first N cores
and gives every side N compute threads (torch threads here, OpenMP threads in vLLM's worker).
OpenMP runtime: vLLM's side always preloads Intel OpenMP (its CPU guide asks for it). Our side and HF run
in this process on `--openmp` (default "gnu": torch's libgomp, what workers start with today; or
"gnu-passive", "intel", see workers/engine/openmp.py); the benchmark re-executes itself on that runtime
when it was started on another, and reports it as `engine_openmp`.
`--quick` runs 8 requests (prompts 32-256, outputs 16-64) on the `small` preset and a 512-token prefix.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._report import Target, add_arguments, finish
from benchmarks._vllm_peer import Request, VLLMSpec, cpu_set, run_vllm
from common.stats import percentile
from heteroserve.modelgen import PRESETS, create_model
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine
from workers.engine.openmp import RUNTIMES, loaded_runtime, runtime_env
from workers.engine.types import EngineRequest, SamplingParams

REPEATS = 3
MAIN_REPEATS = 2
PAD_ID = 3  # the generated models' pad token
TARGETS: dict[str, Target] = {
    "throughput_ratio_vs_hf": (">=", 2.0),  # issue 16
    "throughput_ratio_vs_vllm": (">=", 1.0),  # issue 18
    "batch1_ratio_vs_vllm": (">=", 1.0),
    "ttft_p50_ratio_vs_vllm": ("<=", 1.0),
    "prefix_hit_ttft_ratio": ("<=", 0.2),
}


@dataclass(frozen=True)
class Workload:
    preset: str
    num_requests: int
    prompt_range: tuple[int, int]
    output_range: tuple[int, int]
    prefix_tokens: int


FULL = Workload("bench", 32, (32, 512), (16, 256), 1024)
QUICK = Workload("small", 8, (32, 256), (16, 64), 512)


def make_requests(w: Workload, vocab: int) -> list[Request]:
    rng = np.random.default_rng(0)
    prompts = np.linspace(*w.prompt_range, w.num_requests).astype(int)
    outputs = np.linspace(*w.output_range, w.num_requests).astype(int)
    rng.shuffle(prompts)
    rng.shuffle(outputs)
    return [([1, *rng.integers(4, vocab, n - 1).tolist()], int(m))
            for n, m in zip(prompts, outputs, strict=True)]


def single_requests(vocab: int) -> list[Request]:
    """The single-request prompts (256 tokens, 128 out), one per repetition, the same on every side."""
    return [([1, *np.random.default_rng(10 + rep).integers(4, vocab, 255).tolist()], 128)
            for rep in range(REPEATS)]


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> float:
    """Share of requests whose token lists are identical (lists paired by position)."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"theirs: {len(theirs)} requests against {len(ours)} of ours")
    return sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)


def run_engine(engine: LLMEngine, requests: list[Request]) -> dict[str, Any]:
    """Submit all requests at once and step until done; wall time, TTFT and TPOT per request, tokens."""
    start, cpu_start = time.perf_counter(), time.process_time()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    tokens: dict[str, list[int]] = {f"b{i}": [] for i in range(len(requests))}
    for i, (prompt, out) in enumerate(requests):
        sampling = SamplingParams(max_tokens=out, ignore_eos=True)
        engine.add_request(EngineRequest(f"b{i}", tuple(prompt), sampling))
    while engine.has_unfinished():
        events = engine.step()
        now = time.perf_counter()
        for event in events:
            first.setdefault(event.request_id, now)
            last[event.request_id] = now
            if event.token_id is not None:
                tokens[event.request_id].append(event.token_id)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    ids = [f"b{i}" for i in range(len(requests))]
    ttft = [first[r] - start for r in ids]
    tpot = [(last[r] - first[r]) / max(1, out - 1) for r, (_, out) in zip(ids, requests, strict=True)]
    return {"wall_s": wall, "cpu_s": cpu, "count": sum(map(len, tokens.values())),
            "ttft_p50_s": percentile(ttft, 0.5), "tpot_p50_s": percentile(tpot, 0.5),
            "tokens": [tokens[r] for r in ids]}


def run_hf(model: Any, requests: list[Request]) -> dict[str, Any]:
    """`generate` on all requests as one left-padded batch; per request its first `out` new tokens."""
    start, cpu_start = time.perf_counter(), time.process_time()
    longest = max(len(p) for p, _ in requests)
    ids = torch.tensor([[PAD_ID] * (longest - len(p)) + p for p, _ in requests])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p, _ in requests])
    new = max(out for _, out in requests)
    with torch.inference_mode():
        generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                                   min_new_tokens=new, pad_token_id=PAD_ID)
    tokens = [generated[row, longest : longest + out].tolist() for row, (_, out) in enumerate(requests)]
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
            "count": sum(out for _, out in requests), "tokens": tokens}


def engine_config(model_dir: Path) -> EngineConfig:
    return EngineConfig(model_dir, kv_cache_bytes=1024 * 2**20, max_num_seqs=64, max_num_batched_tokens=512)


def measure_ours(w: Workload, model_dir: Path) -> dict[str, Any]:
    """Our engine and HF, interleaved (see the module docstring); raw figures of each side."""
    from transformers import AutoModelForCausalLM

    vocab = PRESETS[w.preset].vocab_size
    requests = make_requests(w, vocab)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    warm = [([1, *range(10, 60)], 8)]
    run_hf(hf, warm)
    engine_runs, hf_runs = [], []
    engine = LLMEngine(engine_config(model_dir))
    for rep in range(MAIN_REPEATS):
        if rep:
            del engine  # free the previous pool first
            engine = LLMEngine(engine_config(model_dir))
        run_engine(engine, warm)
        engine_runs.append(run_engine(engine, requests))
        hf_runs.append(run_hf(hf, requests))
    eng1, hf1_s = [], []
    for single in single_requests(vocab):
        eng1.append(run_engine(engine, [single]))
        hf1_s.append(run_hf(hf, [single])["wall_s"])
    cold, hot = [], []
    for seed in range(REPEATS):
        prefix = [1, *np.random.default_rng(100 + seed).integers(4, vocab, w.prefix_tokens - 1).tolist()]
        cold.append(run_engine(engine, [(prefix, 1)])["ttft_p50_s"])
        hot.append(run_engine(engine, [(prefix, 1)])["ttft_p50_s"])
    fastest = lambda runs: min(runs, key=lambda r: r["wall_s"])  # noqa: E731
    return {"engine": fastest(engine_runs), "hf": fastest(hf_runs),
            "engine1_s": min(r["wall_s"] for r in eng1), "engine1_cpu_s": min(r["cpu_s"] for r in eng1),
            "hf1_s": min(hf1_s), "prefix_hot_s": min(hot), "prefix_cold_s": min(cold)}


def measure_vllm(w: Workload, model_dir: Path, threads: int) -> dict[str, Any]:
    vocab = PRESETS[w.preset].vocab_size
    spec = VLLMSpec(str(model_dir), threads, make_requests(w, vocab), single_requests(vocab), MAIN_REPEATS)
    return run_vllm(spec)


def summarize(w: Workload, ours: dict[str, Any], vllm: dict[str, Any] | None) -> dict[str, Any]:
    eng, hfr = ours["engine"], ours["hf"]
    engine_tps, hf_tps = eng["count"] / eng["wall_s"], hfr["count"] / hfr["wall_s"]
    result: dict[str, Any] = {
        "throughput_ratio_vs_hf": engine_tps / hf_tps,
        "prefix_hit_ttft_ratio": ours["prefix_hot_s"] / ours["prefix_cold_s"],
        "batch1_ratio_vs_hf": ours["hf1_s"] / ours["engine1_s"],
        "token_agreement_vs_hf": agreement(eng["tokens"], hfr["tokens"]),
        "engine_tokens_per_s": engine_tps, "hf_tokens_per_s": hf_tps,
        "engine_ttft_p50_s": eng["ttft_p50_s"], "engine_tpot_p50_s": eng["tpot_p50_s"],
        "engine_batch1_s": ours["engine1_s"], "hf_batch1_s": ours["hf1_s"],
        "engine_wall_s": eng["wall_s"], "hf_wall_s": hfr["wall_s"],
        "engine_cpu_s": eng["cpu_s"], "hf_cpu_s": hfr["cpu_s"],
        "throughput_ratio_vs_hf_cpu": hfr["cpu_s"] / eng["cpu_s"],
        "model_params": PRESETS[w.preset].num_params, "num_requests": w.num_requests,
    }
    if vllm is not None:
        run = vllm["batched"]
        vllm_tps = sum(map(len, run["tokens"])) / run["wall_s"]
        vllm_ttft = percentile(run["ttft_s"], 0.5)
        result.update({
            "throughput_ratio_vs_vllm": engine_tps / vllm_tps,
            "batch1_ratio_vs_vllm": min(vllm["single_walls_s"]) / ours["engine1_s"],
            "ttft_p50_ratio_vs_vllm": eng["ttft_p50_s"] / vllm_ttft if vllm_ttft else None,
            "token_agreement_vs_vllm": agreement(eng["tokens"], run["tokens"]),
            "vllm_tokens_per_s": vllm_tps, "vllm_ttft_p50_s": vllm_ttft,
            "vllm_batch1_s": min(vllm["single_walls_s"]), "vllm_wall_s": run["wall_s"],
            "vllm_cpu_s": run["cpu_s"],
            "throughput_ratio_vs_vllm_cpu": run["cpu_s"] / eng["cpu_s"],
            "batch1_ratio_vs_vllm_cpu": min(vllm["single_cpu_s"]) / ours["engine1_cpu_s"],
            "vllm_start_s": vllm["start_s"], "vllm_settings": vllm["settings"],
        })
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench engine", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="small model, 8 requests (a few minutes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="cores and compute threads for every side (default 1: steadier when shared)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM peer (fails --check)")
    parser.add_argument("--openmp", choices=RUNTIMES, default="gnu",
                        help="OpenMP runtime of our side and HF (default gnu, torch's; vLLM always intel)")
    args = parser.parse_args(argv)
    if loaded_runtime(os.environ) != args.openmp:  # fixed when torch loaded: start again on the asked one
        try:
            env = runtime_env(os.environ, args.openmp)
        except ValueError as error:
            parser.error(f"--openmp: {error}")
        rest = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, "-m", "heteroserve", "bench", "engine", *rest], env)
    cores = cpu_set(args.threads)  # raises ValueError naming `threads` when the machine has fewer
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(args.threads)
    workload = QUICK if args.quick else FULL
    skipped: list[str] = []
    vllm = None
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        model_dir = create_model(Path(tmp) / workload.preset, preset=workload.preset, seed=0)
        if args.no_vllm:
            skipped.append("vllm peer (--no-vllm)")
        else:
            try:  # first, alone: its engine core and worker exit before our side starts
                vllm = measure_vllm(workload, model_dir, args.threads)
            except (RuntimeError, OSError) as error:
                print(f"vllm peer failed: {error}", file=sys.stderr)  # the whole tail: the table has one line
                skipped.append(f"vllm peer failed: {str(error).splitlines()[0]}")
        result = summarize(workload, measure_ours(workload, model_dir), vllm)
    result.update({"preset": workload.preset, "threads": args.threads, "cores": cores,
                   "engine_openmp": loaded_runtime(os.environ)})
    print(f"bench engine ({'quick' if args.quick else 'full'}, preset {workload.preset}, "
          f"{args.threads} thread(s) on cores {cores})")
    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:26s} {shown:>12s}")
    return finish(result, TARGETS, args, skipped)
