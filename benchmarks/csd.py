"""`heteroserve bench csd`: in-storage decode attention (InstInfer) vs host-offload (FlexGen-style) on the
same emulated computational storage drive.

Model: the `tiny` preset (2 layers, hidden 128, 4 query / 2 KV heads, head_dim 32, float32) with its
context raised to 33,792 tokens in config.json (weights do not depend on it; RoPE tables are computed at
load). Engine: device csd, 1 torch thread while decoding (the drive process has `drive_threads` = 1 of
this machine's 2 vCPUs; prefill and the HF oracle, not measured, use 2), block size 16, no prefix
caching, whole-prompt prefill steps.

Workload per context (2k, 8k, 32k tokens), fixed before measuring: `--batch` (4) sequences of distinct
random prompts of exactly that length, prefilled on the host (their KV written to the drive over the
link), then pairs of decode steps of the whole batch, each pair one step attending in storage ("drive")
then one host-offload step ("host": each sequence's KV for every layer is read over the link and
attended on the host): 1 warm-up pair, not measured, then `--pairs` (7) measured pairs. Interleaving puts
any drift of this shared machine's load on both sites alike. The drive is the same for both (same
process, flash, limiters); only the attention site changes, between steps.

Measured per site and step, two clocks:
- modelled seconds (the ratios checked): the host's CPU seconds of the step plus the drive's modelled
  seconds (`workers/devices/csd/cost.py`: every counted byte at the drive's modelled link and flash
  rates, per-message latency, drive compute at its CPU time). CPU time does not stretch while a process
  waits for a core, and byte counts do not depend on load at all, so these ratios are the same on an
  idle and a loaded machine (up to cache and memory contention). Tokens/s = tokens / summed seconds.
- wall seconds (reported; the 32k ratio is checked too): tokens/s from the median step, ratio = the
  median over pairs of (host-offload step / in-storage step).
Also: link bytes per generated token (every message of those steps, both directions, headers included;
the drive counts the same bytes in `DriveStats`) and flash bytes per token. The greedy tokens of sequence
0 over all steps are compared with Hugging Face transformers' at every context (both sites must give
HF's tokens).

Targets: link_bytes_ratio_32k (host-offload / in-storage link bytes per token) >= 10; throughput_ratio_32k
(in-storage / host-offload modelled tokens/s) >= 3 and growing with context (2k < 8k < 32k);
wall_throughput_ratio_32k >= 3; tokens equal HF at every context. Drive figures: `DriveConfig` defaults
(docs/csd.md), time_scale 100.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import Target, add_arguments, finish
from heteroserve.modelgen import create_model
from workers.devices.csd import DriveConfig, DrivePool, DriveStats
from workers.devices.csd.config import AttentionSite
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine
from workers.engine.types import EngineRequest, SamplingParams

CONTEXT_TOKENS = 33_792
HF_CHUNK = 2048
CONTEXTS = (2048, 8192, 32768)
VOCAB = 2048
SITES: tuple[AttentionSite, ...] = ("drive", "host")
WARMUP_PAIRS = 1
UNMEASURED_THREADS = 2  # torch threads of the parts not timed (host prefill, the HF oracle)
TARGETS: dict[str, Target] = {
    "link_bytes_ratio_32k": (">=", 10.0),
    "throughput_ratio_32k": (">=", 3.0),
    "throughput_ratio_grows": ("==", True),
    "wall_throughput_ratio_32k": (">=", 3.0),
    "tokens_equal_hf": ("==", True),
}


def long_context_model(directory: Path) -> Path:
    model_dir = create_model(directory / "tiny-33k", preset="tiny", seed=0)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["max_position_embeddings"] = CONTEXT_TOKENS
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return model_dir


def prompts(batch: int, length: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [[1, *torch.randint(4, VOCAB, (length - 1,), generator=gen).tolist()] for _ in range(batch)]


def _run_step(engine: LLMEngine, tokens: dict[str, list[int]]) -> tuple[float, float, int]:
    """Run one engine step; (wall seconds, host CPU seconds, tokens generated)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    generated = 0
    for event in engine.step():
        if event.token_id is not None:
            tokens[event.request_id].append(event.token_id)
            generated += 1
    return time.perf_counter() - started, time.process_time() - cpu_started, generated


def _measure_step(engine: LLMEngine, pool: DrivePool, tokens: dict[str, list[int]]) -> dict[str, float]:
    """One decode step of the whole batch on the pool's current site: wall and modelled seconds, link and
    flash bytes. Modelled = host CPU seconds of the step + the drive's modelled seconds (cost.py): the
    host waits for every reply, so their sum is the step's time under the model."""
    before = pool.stats()  # outside the timed step; the drive does not price stats queries
    link_before = pool.link_bytes_sent + pool.link_bytes_received
    wall, host_cpu, generated = _run_step(engine, tokens)
    link = pool.link_bytes_sent + pool.link_bytes_received - link_before
    delta: DriveStats = pool.stats().minus(before)
    assert generated == len(tokens), f"{generated} tokens in a step of {len(tokens)} sequences"
    return {"wall": wall, "modelled": host_cpu + delta.modelled_seconds, "host_cpu": host_cpu,
            "drive_modelled": delta.modelled_seconds, "link": link, "flash": delta.flash_bytes_read,
            "tokens": generated}


def _summarise(steps: list[dict[str, float]]) -> dict[str, Any]:
    tokens = sum(s["tokens"] for s in steps)
    per_step = tokens / len(steps)
    return {"tokens_per_s": tokens / sum(s["modelled"] for s in steps),
            "wall_tokens_per_s": per_step / statistics.median(s["wall"] for s in steps),
            "wall_seconds": [round(s["wall"], 4) for s in steps],
            "modelled_seconds": [round(s["modelled"], 4) for s in steps],
            "host_cpu_seconds": sum(s["host_cpu"] for s in steps),
            "drive_modelled_seconds": sum(s["drive_modelled"] for s in steps),
            "link_bytes_per_token": sum(s["link"] for s in steps) / tokens,
            "flash_bytes_per_token": sum(s["flash"] for s in steps) / tokens}


def measure_context(model_dir: Path, drive_dir: Path, context: int, batch: int, pairs: int
                    ) -> tuple[dict[str, Any], list[int], list[int]]:
    """One engine + drive; prefill `batch` prompts of `context` tokens, then WARMUP_PAIRS + `pairs` pairs
    of decode steps (in storage, host-offload), the warm-up pair not measured."""
    steps = 2 * (WARMUP_PAIRS + pairs)
    max_tokens = steps + batch + 1  # nobody finishes while measured: every step decodes the whole batch
    blocks = batch * (-(-(context + max_tokens) // 16)) + 8
    engine = LLMEngine(EngineConfig(model_dir, device="csd", csd_path=drive_dir, num_kv_blocks=blocks,
                                    max_num_seqs=batch, max_num_batched_tokens=context + 1,
                                    enable_prefix_caching=False, num_threads=1))
    pool = engine.pool
    assert isinstance(pool, DrivePool), "a csd engine's pool is a DrivePool"
    batch_prompts = prompts(batch, context, seed=context)
    tokens: dict[str, list[int]] = {f"s{i}": [] for i in range(batch)}
    for i, prompt in enumerate(batch_prompts):
        engine.add_request(EngineRequest(f"s{i}", tuple(prompt), SamplingParams(max_tokens=max_tokens,
                                                                                 ignore_eos=True)))
    started = time.perf_counter()
    torch.set_num_threads(UNMEASURED_THREADS)  # prefill is not measured: both cores shorten the run
    while any(not t for t in tokens.values()):
        _run_step(engine, tokens)
    torch.set_num_threads(1)
    row: dict[str, Any] = {"prefill_seconds": time.perf_counter() - started}
    measured: dict[str, list[dict[str, float]]] = {site: [] for site in SITES}
    for pair in range(WARMUP_PAIRS + pairs):  # interleaved: load drift hits both sites alike
        for site in SITES:
            pool.attention_site = site
            step = _measure_step(engine, pool, tokens)
            if pair >= WARMUP_PAIRS:
                measured[site].append(step)
    for name, steps_of_site in measured.items():
        row[name] = _summarise(steps_of_site)
    row["throughput_ratio"] = row["drive"]["tokens_per_s"] / row["host"]["tokens_per_s"]
    row["wall_throughput_ratio"] = statistics.median(
        h["wall"] / d["wall"] for d, h in zip(measured["drive"], measured["host"], strict=True))
    row["link_bytes_ratio"] = row["host"]["link_bytes_per_token"] / row["drive"]["link_bytes_per_token"]
    for request_id in tokens:
        engine.abort_request(request_id)
    pool.close()
    return row, batch_prompts[0], tokens["s0"]


def hf_greedy(model_dir: Path, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy tokens of HF transformers' model for `prompt`: the prompt goes through HF's forward in
    chunks of HF_CHUNK tokens with its KV cache (a whole 32k prompt in one forward would materialise
    a 32k x 32k mask, ~4 GB), then one token at a time, argmax each."""
    from transformers import AutoModelForCausalLM, DynamicCache

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                      attn_implementation="sdpa")
    torch.set_num_threads(UNMEASURED_THREADS)
    cache = DynamicCache()
    ids = torch.tensor([prompt])
    tokens: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(prompt), HF_CHUNK):
            logits = model(input_ids=ids[:, start : start + HF_CHUNK], past_key_values=cache,
                           use_cache=True).logits[0, -1]
        for _ in range(max_new_tokens):
            tokens.append(int(logits.argmax()))
            logits = model(input_ids=torch.tensor([[tokens[-1]]]), past_key_values=cache,
                           use_cache=True).logits[0, -1]
    torch.set_num_threads(1)
    return tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench csd", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--contexts", default=",".join(map(str, CONTEXTS)),
                        help="comma-separated context lengths (default 2048,8192,32768)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per decode batch (default 4)")
    parser.add_argument("--pairs", type=int, default=7,
                        help="measured pairs of decode steps (in storage, host-offload) per context, after "
                             f"{WARMUP_PAIRS} warm-up pair (default 7)")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF token check (fails --check)")
    args = parser.parse_args(argv)
    contexts = [int(c) for c in args.contexts.split(",")]
    room = CONTEXT_TOKENS - 2 * (WARMUP_PAIRS + args.pairs) - args.batch - 1
    if any(not 16 < c < room for c in contexts):
        parser.error(f"--contexts: each must be in (16, {room})")
    if args.pairs < 1:
        parser.error("--pairs: must be >= 1")
    torch.set_num_threads(1)
    drive = DriveConfig()
    result: dict[str, Any] = {"model": "tiny preset, context 33792", "batch": args.batch, "pairs": args.pairs,
                              "warmup_pairs": WARMUP_PAIRS,
                              "drive": drive.to_dict()}
    skipped = ["hf token check (--no-hf)"] if args.no_hf else []
    equal = []
    with tempfile.TemporaryDirectory(prefix="bench-csd-") as tmp:
        model_dir = long_context_model(Path(tmp))
        for context in contexts:
            drive.save(Path(tmp) / f"drive-{context}")
            row, prompt, got = measure_context(model_dir, Path(tmp) / f"drive-{context}", context, args.batch,
                                               args.pairs)
            if not args.no_hf:
                row["tokens_equal_hf"] = got == hf_greedy(model_dir, prompt, len(got))
                equal.append(row["tokens_equal_hf"])
            key = f"{context // 1024}k"
            result[f"context_{key}"] = row
            for name in ("throughput_ratio", "wall_throughput_ratio", "link_bytes_ratio"):
                result[f"{name}_{key}"] = row[name]
            _print_row(context, row)
    for name in ("throughput_ratio", "wall_throughput_ratio"):
        ratios = [result[f"{name}_{c // 1024}k"] for c in contexts]
        result[f"{name}_grows"] = len(ratios) > 1 and all(a < b for a, b in itertools.pairwise(ratios))
    result["tokens_equal_hf"] = bool(equal) and all(equal)
    return finish(result, TARGETS, args, skipped)


def _print_row(context: int, row: dict[str, Any]) -> None:
    for site in ("drive", "host"):
        r = row[site]
        print(f"ctx {context:6d} {site:5s}: {r['tokens_per_s']:8.2f} tok/s modelled, "
              f"{r['wall_tokens_per_s']:8.2f} wall  {r['link_bytes_per_token']:12.0f} link B/tok  "
              f"{r['flash_bytes_per_token']:12.0f} flash B/tok")
    print(f"ctx {context:6d} ratios: throughput {row['throughput_ratio']:.2f}x modelled, "
          f"{row['wall_throughput_ratio']:.2f}x wall (median of pairs), link bytes "
          f"{row['link_bytes_ratio']:.1f}x, prefill {row['prefill_seconds']:.1f} s, "
          f"tokens = HF: {row.get('tokens_equal_hf', 'not checked')}", flush=True)
