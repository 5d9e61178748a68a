"""`heteroserve bench csd`: in-storage decode attention (InstInfer) vs host-offload (FlexGen-style) on the
same emulated computational storage drive.

Model: the `tiny` preset (2 layers, hidden 128, 4 query / 2 KV heads, head_dim 32, float32) with its
context raised to 33,792 tokens in config.json (weights do not depend on it; RoPE tables are computed at
load). Engine: device csd, 1 torch thread (the drive process has `drive_threads` = 1 of this machine's
2 vCPUs), block size 16, no prefix caching, whole-prompt prefill steps.

Workload per context (2k, 8k, 32k tokens): `--batch` (4) sequences of distinct random prompts of exactly
that length, prefilled on the host (their KV written to the drive over the link), then 2 x `--steps`
(4) decode steps of all sequences in one batch, alternating step by step between attending in storage
("drive") and host-offload ("host": every step reads each sequence's KV for every layer over the link
and attends on the host), so that both sites see the same load of this shared machine. The drive is the
same for both (same process, flash, limiters); only the attention site changes, between steps. Measured
per site: decode tokens/s (wall time of its steps) and link bytes per generated token (every message of
those steps, both directions, headers included; the drive counts the same bytes in `DriveStats`).
The greedy tokens of sequence 0 over both phases are compared with Hugging Face transformers' at every
context (both sites must give HF's tokens).

Targets: link_bytes_ratio_32k (host-offload / in-storage link bytes per token) >= 10; throughput_ratio_32k
(in-storage / host-offload tokens/s) >= 3; throughput ratio growing with context (2k < 8k < 32k);
tokens equal HF at every context. Drive figures: `DriveConfig` defaults (docs/csd.md), time_scale 100.
"""

from __future__ import annotations

import argparse
import itertools
import json
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
TARGETS: dict[str, Target] = {
    "link_bytes_ratio_32k": (">=", 10.0),
    "throughput_ratio_32k": (">=", 3.0),
    "throughput_ratio_grows": ("==", True),
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


def _run_steps(engine: LLMEngine, tokens: dict[str, list[int]], steps: int) -> tuple[float, int]:
    """Run `steps` engine steps; (wall seconds, tokens generated)."""
    started = time.perf_counter()
    generated = 0
    for _ in range(steps):
        for event in engine.step():
            if event.token_id is not None:
                tokens[event.request_id].append(event.token_id)
                generated += 1
    return time.perf_counter() - started, generated


def measure_context(model_dir: Path, drive_dir: Path, context: int, batch: int, steps: int
                    ) -> tuple[dict[str, Any], list[int], list[int]]:
    """One engine + drive; prefill `batch` prompts of `context` tokens, decode on each site."""
    max_tokens = 2 * steps + batch + 1  # nobody finishes while measured: every step decodes the whole batch
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
    while any(not t for t in tokens.values()):
        _run_steps(engine, tokens, 1)
    prefill_seconds = time.perf_counter() - started
    row: dict[str, Any] = {"prefill_seconds": prefill_seconds}
    totals = {site: {"seconds": 0.0, "tokens": 0, "link": 0, "flash": 0, "compute": 0.0} for site in SITES}
    for _ in range(steps):  # sites alternate step by step, so both see the same load on this shared machine
        for site in SITES:
            pool.attention_site = site
            before = pool.stats()  # a round trip outside the timed step; its link bytes are not counted
            link_before = pool.link_bytes_sent + pool.link_bytes_received
            seconds, generated = _run_steps(engine, tokens, 1)
            link = pool.link_bytes_sent + pool.link_bytes_received - link_before
            delta: DriveStats = pool.stats().minus(before)
            assert generated == batch, f"{generated} tokens in a step of {batch} sequences"
            total = totals[site]
            total["seconds"] += seconds
            total["tokens"] += generated
            total["link"] += link
            total["flash"] += delta.flash_bytes_read
            total["compute"] += delta.compute_seconds
    for site, total in totals.items():
        row[site] = {"tokens_per_s": total["tokens"] / total["seconds"], "seconds": total["seconds"],
                     "link_bytes_per_token": total["link"] / total["tokens"],
                     "flash_bytes_per_token": total["flash"] / total["tokens"],
                     "drive_compute_seconds": total["compute"]}
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
    return tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench csd", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--contexts", default=",".join(map(str, CONTEXTS)),
                        help="comma-separated context lengths (default 2048,8192,32768)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per decode batch (default 4)")
    parser.add_argument("--steps", type=int, default=4, help="decode steps per attention site (default 4)")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF token check (fails --check)")
    args = parser.parse_args(argv)
    contexts = [int(c) for c in args.contexts.split(",")]
    if any(not 16 < c < CONTEXT_TOKENS - 2 * args.steps for c in contexts):
        parser.error(f"--contexts: each must be in (16, {CONTEXT_TOKENS - 2 * args.steps})")
    torch.set_num_threads(1)
    drive = DriveConfig()
    result: dict[str, Any] = {"model": "tiny preset, context 33792", "batch": args.batch, "steps": args.steps,
                              "drive": drive.to_dict()}
    skipped = ["hf token check (--no-hf)"] if args.no_hf else []
    equal = []
    with tempfile.TemporaryDirectory(prefix="bench-csd-") as tmp:
        model_dir = long_context_model(Path(tmp))
        for context in contexts:
            drive.save(Path(tmp) / f"drive-{context}")
            row, prompt, got = measure_context(model_dir, Path(tmp) / f"drive-{context}", context, args.batch,
                                               args.steps)
            if not args.no_hf:
                row["tokens_equal_hf"] = got == hf_greedy(model_dir, prompt, len(got))
                equal.append(row["tokens_equal_hf"])
            key = f"{context // 1024}k"
            row["throughput_ratio"] = row["drive"]["tokens_per_s"] / row["host"]["tokens_per_s"]
            host, drive_row = row["host"], row["drive"]
            row["link_bytes_ratio"] = host["link_bytes_per_token"] / drive_row["link_bytes_per_token"]
            result[f"context_{key}"] = row
            result[f"throughput_ratio_{key}"] = row["throughput_ratio"]
            result[f"link_bytes_ratio_{key}"] = row["link_bytes_ratio"]
            _print_row(context, row)
    ratios = [result[f"throughput_ratio_{c // 1024}k"] for c in contexts]
    result["throughput_ratio_grows"] = len(ratios) > 1 and all(a < b for a, b in itertools.pairwise(ratios))
    result["tokens_equal_hf"] = bool(equal) and all(equal)
    return finish(result, TARGETS, args, skipped)


def _print_row(context: int, row: dict[str, Any]) -> None:
    for site in ("drive", "host"):
        r = row[site]
        print(f"ctx {context:6d} {site:5s}: {r['tokens_per_s']:8.2f} tok/s  "
              f"{r['link_bytes_per_token']:12.0f} link B/tok  {r['flash_bytes_per_token']:12.0f} flash B/tok")
    print(f"ctx {context:6d} ratios: throughput {row['throughput_ratio']:.2f}x, link bytes "
          f"{row['link_bytes_ratio']:.1f}x, prefill {row['prefill_seconds']:.1f} s, "
          f"tokens = HF: {row.get('tokens_equal_hf', 'not checked')}", flush=True)
