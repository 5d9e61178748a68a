"""Where a step of our engine spends its time, on the `bench engine` workload (issue 18's profile step).

`python -m benchmarks._engine_profile [--threads N] [--quick]` runs the engine benchmark's workloads on
one engine whose parts are wrapped with wall-clock timers (this process only; no engine code changes):
- schedule: `Scheduler.schedule`;
- prepare: the runner's metadata (flat ids/positions/slots, decode groups with block tables and masks,
  prefill chunks), rebuilt from Python lists every step;
- forward: `LlamaModel.forward`, split into attention (`paged_attention`: KV write + gather + math;
  the KV copies `pool.gather` / `pool.gather_keys` (decodes read V in place), `pool.write`, and the
  in-place decode attention of the compiled kernel (`_decode_in_place`: both kernel calls and the
  softmax) also shown alone) and the rest (fused GEMMs, norms, RoPE, SwiGLU; with the compiled library
  the fused calls `rope_write_kv` (RoPE + KV write: the step's KV write is there, not in kv_write) and
  `add_rms_norm` (residual add + RMSNorm) also shown alone);
- logits: final norm + lm_head on the sampled rows, and the copy to CPU;
- sample: `sampler.sample` (argmax for greedy rows, `.tolist()`);
- detokenize: `Detokenizer.push`; outputs: the rest of the engine's per-token bookkeeping;
- commit: `BlockManager.commit` (prefix-cache registration of newly full blocks);
- other: step time not in any of these (Python glue between them).
Two scenarios: batch 1 (prompt 256, 128 out, one request alone) and the batched workload (32 requests);
for the batched run, steps are split into pure-decode steps and steps that carry prefill chunks.
With `--ops`, torch.profiler's top operators (self CPU time) over the batched run are printed too.
CPU ops run synchronously on CPU, so wall-clock timers around them measure their cost.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import workers.engine.attention as attention_module
import workers.engine.engine as engine_module
import workers.engine.model as model_module
from benchmarks.engine import FULL, QUICK, engine_config, make_requests, run_engine, single_requests
from heteroserve.modelgen import PRESETS, create_model
from workers.engine.detokenizer import Detokenizer
from workers.engine.engine import LLMEngine

PHASES = ("schedule", "prepare", "attention", "  kv_gather", "  kv_write", "  decode_in_place",
          "forward_rest", "  rope_kv_write", "  add_rms_norm", "logits", "sample", "detokenize", "outputs",
          "commit", "other")


class StepTimes:
    """Seconds per phase of the current step; `close_step` files them under the step's kind."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.steps: dict[str, list[dict[str, float]]] = defaultdict(list)

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - start
        return timed

    def close_step(self, kind: str, total_s: float) -> None:
        c = self.current
        c["forward_rest"] = c["forward"] - c["attention"]
        c["outputs"] = c["engine_sample"] - c["sample"] - c["detokenize"]
        c["other"] = total_s - sum(c[p] for p in ("schedule", "prepare", "forward", "logits", "engine_sample",
                                                  "commit"))
        c["step"] = total_s
        self.steps[kind].append(dict(c))
        self.current = defaultdict(float)


def instrument(engine: LLMEngine, times: StepTimes) -> None:
    """Wrap the engine's parts with timers (instance attributes and this process's module globals)."""
    runner, model = engine.runner, engine.model
    engine.scheduler.schedule = times.wrap("schedule", engine.scheduler.schedule)  # type: ignore[method-assign]
    for name in ("_flat_inputs", "_decode_groups", "_in_place_decodes", "_prefill_chunks"):
        setattr(runner, name, times.wrap("prepare", getattr(runner, name)))
    model.forward = times.wrap("forward", model.forward)  # type: ignore[method-assign]
    model.logits = times.wrap("logits", model.logits)  # type: ignore[method-assign]
    engine.pool.gather = times.wrap("  kv_gather", engine.pool.gather)  # type: ignore[method-assign]
    engine.pool.gather_keys = times.wrap("  kv_gather", engine.pool.gather_keys)  # type: ignore[attr-defined]
    engine.pool.write = times.wrap("  kv_write", engine.pool.write)  # type: ignore[method-assign]
    engine.block_manager.commit = times.wrap("commit", engine.block_manager.commit)  # type: ignore[method-assign]
    engine._sample = times.wrap("engine_sample", engine._sample)  # type: ignore[method-assign]


@contextlib.contextmanager
def patched_modules(times: StepTimes) -> Iterator[None]:
    """Time attention, sampling and detokenization of every engine in this process while inside;
    the module globals are restored on exit."""
    saved = (model_module.paged_attention, engine_module.sample, Detokenizer.push)
    saved_in_place = attention_module._decode_in_place
    saved_fused = (model_module.rope_write_kv, model_module.add_rms_norm)
    model_module.rope_write_kv = times.wrap("  rope_kv_write", model_module.rope_write_kv)
    model_module.add_rms_norm = times.wrap("  add_rms_norm", model_module.add_rms_norm)
    model_module.paged_attention = times.wrap("attention", model_module.paged_attention)
    attention_module._decode_in_place = times.wrap("  decode_in_place", saved_in_place)
    engine_module.sample = times.wrap("sample", engine_module.sample)
    Detokenizer.push = times.wrap("detokenize", Detokenizer.push)  # type: ignore[method-assign]
    try:
        yield
    finally:
        model_module.paged_attention, engine_module.sample, Detokenizer.push = saved  # type: ignore
        attention_module._decode_in_place = saved_in_place
        model_module.rope_write_kv, model_module.add_rms_norm = saved_fused


def drive(engine: LLMEngine, times: StepTimes, requests: list[tuple[list[int], int]], label: str) -> float:
    """Run `requests` like the benchmark, timing every step; returns the wall time."""
    from workers.engine.types import EngineRequest, SamplingParams

    for i, (prompt, out) in enumerate(requests):
        engine.add_request(EngineRequest(f"{label}{i}", tuple(prompt), SamplingParams(max_tokens=out,
                                                                                      ignore_eos=True)))
    start = time.perf_counter()
    while engine.has_unfinished():
        step_start = time.perf_counter()
        chunks_before = [len(s.token_ids) - s.num_computed_tokens for s in engine.scheduler.running]
        engine.step()
        prefilling = any(n > 1 for n in chunks_before) or engine.scheduler.waiting or not chunks_before
        times.close_step(f"{label} {'prefill+decode' if prefilling else 'decode'}",
                         time.perf_counter() - step_start)
    return time.perf_counter() - start


def table(times: StepTimes) -> str:
    kinds = sorted(times.steps)
    rows = ["| phase (ms per step) | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for phase in (*PHASES, "step"):
        cells = []
        for kind in kinds:
            steps = times.steps[kind]
            mean = sum(s.get(phase, 0.0) for s in steps) / len(steps) * 1e3
            share = sum(s.get(phase, 0.0) for s in steps) / sum(s["step"] for s in steps)
            cells.append(f"{mean:.2f} ({share:.0%})")
        rows.append(f"| {phase} | " + " | ".join(cells) + " |")
    rows.append("| steps | " + " | ".join(str(len(times.steps[k])) for k in kinds) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ops", action="store_true", help="also torch.profiler's top operators")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    workload = QUICK if args.quick else FULL
    vocab = PRESETS[workload.preset].vocab_size
    with tempfile.TemporaryDirectory(prefix="engine-profile-") as tmp:
        model_dir = create_model(Path(tmp) / workload.preset, preset=workload.preset, seed=0)
        engine = LLMEngine(engine_config(model_dir))
        run_engine(engine, [([1, *range(10, 60)], 8)])  # warm-up, untimed
        times = StepTimes()
        instrument(engine, times)
        with patched_modules(times):
            single = drive(engine, times, single_requests(vocab)[:1], "batch1")
            batched = drive(engine, times, make_requests(workload, vocab), "batched")
        print(f"threads {args.threads}; batch-1 wall {single:.3f} s; batched wall {batched:.3f} s")
        print(table(times))
        if args.ops:
            fresh = LLMEngine(engine_config(model_dir))
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                run_engine(fresh, make_requests(workload, vocab))
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
